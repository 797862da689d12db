"""The lobby's web pages: ``/admin`` (the admin console) and ``/api/docs`` (the API reference).

Both are static files shipped in the package (``lobby/http/static/``), served
as they are: no build step, nothing fetched from another site. Only the files
present at start are served (a fixed name -> path table, so no request path
ever reaches the file system), with a Content-Security-Policy that allows
scripts and styles from this origin only.

* ``GET /admin``: the admin console (:mod:`lobby.admin` explains the API it calls);
* ``GET /api/docs``: Swagger UI over ``/api/openapi.json`` (``swagger-ui-dist`` 5.35.0 from
  npm, its ``swagger-ui-bundle.js`` and ``swagger-ui.css`` as published, Apache-2.0: the
  ``LICENSE`` and ``NOTICE`` files ship beside them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

__all__ = ["STATIC_DIR", "add_pages"]

STATIC_DIR = Path(__file__).resolve().parent / "http" / "static"

_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".txt": "text/plain",
}
_ADMIN_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
# Swagger UI sets style attributes and draws its icons as data: SVG
_DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_pages(app: web.Application) -> None:
    """Register ``/admin`` and ``/api/docs`` (and their asset files) on ``app``."""
    _mount(app, "/admin", STATIC_DIR / "admin", _ADMIN_CSP)
    _mount(app, "/api/docs", STATIC_DIR / "docs", _DOCS_CSP)


def _mount(app: web.Application, prefix: str, folder: Path, csp: str) -> None:
    files = {f.name: f for f in sorted(folder.iterdir()) if f.is_file() and f.suffix in _TYPES}
    app.router.add_get(prefix, _file(files["index.html"], csp))
    app.router.add_get(prefix + "/", _redirect(prefix))
    app.router.add_get(prefix + "/{name}", _named(files, csp))


def _headers(path: Path, csp: str) -> dict[str, str]:
    return {
        "Content-Type": _TYPES[path.suffix] + "; charset=utf-8" * (path.suffix != ".png"),
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def _file(path: Path, csp: str) -> Handler:
    async def handle(_request: web.Request) -> web.StreamResponse:
        return web.FileResponse(path, headers=_headers(path, csp))

    return handle


def _redirect(prefix: str) -> Handler:
    async def handle(_request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect(prefix)

    return handle


def _named(files: dict[str, Path], csp: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        path = files.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers=_headers(path, csp))

    return handle
