"""Bare aiohttp servers, the baselines of the lobby benchmarks, each run in a child process.

``json_server_child``: one GET route answering a fixed JSON document with ``web.json_response``
(the cheapest ordinary aiohttp handler). ``ws_broadcast_child``: a WebSocket route that keeps
every connection in a set and sends each text message it receives to all of them, one
``send_str`` after another: the least a chat broadcast can cost on aiohttp.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["json_server_child", "ws_broadcast_child"]


async def _serve_app(ctl: Any, app: Any) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    server = site._server
    assert server is not None
    port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
    ctl.send(("ready", port))
    try:
        await ctl.serve({})
    finally:
        await runner.cleanup()


async def json_server_child(ctl: Any, path: str, document: Any) -> None:
    """Serve ``document`` as JSON at GET ``path`` on 127.0.0.1, port 0 (announced)."""
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(document)

    app = web.Application()
    app.router.add_get(path, handler)
    await _serve_app(ctl, app)


async def ws_broadcast_child(ctl: Any) -> None:
    """Serve a broadcast WebSocket at /ws on 127.0.0.1, port 0 (announced)."""
    from aiohttp import WSMsgType, web

    clients: set[web.WebSocketResponse] = set()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        clients.add(ws)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    for other in list(clients):
                        if not other.closed:
                            await other.send_str(msg.data)
        finally:
            clients.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    await _serve_app(ctl, app)
    await asyncio.sleep(0)
