"""The lobby half of a client: login over REST, the lobby WebSocket, requests answered by ACK.

:class:`LobbySession` owns the REST session (:class:`~mesh.client.rest.LobbyRest`)
and the WebSocket (:class:`~mesh.client.socket.LobbySocket`, with
reconnection). :meth:`LobbySession.open` checks the lobby (``GET /api/status``:
protocol version, ticket key, Fernet offer), optionally registers, logs in and
opens the socket; :meth:`LobbySession.request` sends a message the lobby answers
with ``ACK`` or ``ERROR`` (matched by ``ref_id``); the typed REST calls return
the bodies of :mod:`protocol.rest`. Every lobby message goes to ``on_message``
after its ``ACK``/``ERROR`` settled the waiting request.

Its phase is one value::

    idle --open()--> opening --(logged in, socket open)--> open
    opening --(any failure)--> closed   (REST session and socket closed, token dropped)
    open --(socket gave up: session ended, lobby gone)--> lost   (``on_lost`` is called)
    any --close()--> closing --> closed
    closed/lost --open()--> opening

A failed :meth:`LobbySession.open` leaves nothing open behind it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Literal

from mesh.client.rest import LobbyRest, read_body
from mesh.client.socket import LobbySocket, ReconnectPolicy, SocketState
from protocol.codec import serialize
from protocol.crypto import WS_FERNET_SALT, FernetSealer, b64url_decode, derive_fernet_key
from protocol.errors import ApiError, ErrorCode, MeshError, NotConnectedError, ProtocolError
from protocol.messages.auth import DisconnectMessage
from protocol.messages.base import BaseMessage
from protocol.messages.system import AckMessage, ErrorMessage
from protocol.rest import (
    CharacterListResponse,
    CharacterOut,
    CharacterSelectResponse,
    IceServersOut,
    LoginResponse,
    PeerInfoOut,
    RegisterResponse,
    StatusResponse,
)
from protocol.version import check_version

__all__ = ["LobbySession", "SessionPhase", "decode_keys"]

logger = logging.getLogger("mesh.client")

SessionPhase = Literal["idle", "opening", "open", "lost", "closing", "closed"]


class LobbySession:
    """One client's session with the lobby (see the module docstring)."""

    def __init__(
        self,
        server_url: str,
        *,
        on_message: Callable[[BaseMessage], None],
        on_lost: Callable[[], None],
        reconnect: ReconnectPolicy | None = None,
        heartbeat_interval: float = 20.0,
        request_timeout: float = 15.0,
        encryption_enabled: bool = False,
        encryption_key: str | None = None,
    ) -> None:
        self.rest = LobbyRest(server_url, timeout=request_timeout)
        self.socket: LobbySocket | None = None
        """The lobby WebSocket (None before :meth:`open`)."""
        self.status: StatusResponse | None = None
        """``GET /api/status`` as read by the last :meth:`open`."""
        self.account: LoginResponse | None = None
        """The login answer of the last successful :meth:`open`."""
        self.lobby_public_key: bytes | None = None
        """The lobby's Ed25519 ticket key (from the status)."""
        self.lobby_accepted_keys: tuple[bytes, ...] = ()
        """Other keys whose tickets the lobby vouches for (a key rotation; from the status)."""
        self.reconnect_policy = reconnect or ReconnectPolicy()
        self.heartbeat_interval = heartbeat_interval
        self.request_timeout = request_timeout
        self._encryption_enabled = encryption_enabled
        self._encryption_key = encryption_key
        self._on_message = on_message
        self._on_lost = on_lost
        self._phase: SessionPhase = "idle"
        self._pending: dict[str, asyncio.Future[AckMessage]] = {}
        self._state_waiters: list[tuple[SocketState, asyncio.Future[None]]] = []

    # -- state --------------------------------------------------------------------------------

    @property
    def phase(self) -> SessionPhase:
        return self._phase

    @property
    def connected(self) -> bool:
        """True while the lobby WebSocket is open."""
        return self.socket is not None and self.socket.is_open()

    @property
    def connection_state(self) -> SocketState:
        """``idle``, ``connecting``, ``connected``, ``reconnecting`` or ``closed``."""
        return self.socket.state if self.socket is not None else "idle"

    async def wait_connection_state(self, state: SocketState, wait: float = 30.0) -> None:
        """Wait until the socket is in ``state`` (TimeoutError after ``wait`` s)."""
        if self.connection_state == state:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (state, fut)
        self._state_waiters.append(entry)
        try:
            await asyncio.wait_for(fut, wait)
        finally:
            if entry in self._state_waiters:
                self._state_waiters.remove(entry)

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self, username: str, password: str, *, register: bool = False) -> LoginResponse:
        """Check the lobby, (register,) log in, open the WebSocket; see the module docstring.

        Raises :class:`ApiError` (the lobby's ``status``/``code``, or ``status=0,
        code=unavailable`` when it is unreachable, ``version_mismatch`` when it
        speaks another protocol version). On failure nothing stays open.
        """
        self._phase = "opening"
        try:
            status = await self.fetch_status()
            sealer = await self._ws_sealer(status)
            if register:
                await self.register(username, password)
            login = await self.rest.call(
                LoginResponse,
                "POST",
                "/api/auth/login",
                {"username": username, "password": password},
                auth=False,
            )
            self.rest.token = login.token
            if self.socket is not None:
                await self.socket.close()
            self.socket = LobbySocket(
                self.rest,
                on_message=self._on_socket_message,
                on_state=self._on_socket_state,
                policy=self.reconnect_policy,
                heartbeat_interval=self.heartbeat_interval,
                sealer=sealer,
            )
            await self.socket.open()
        except BaseException:
            self.rest.token = None
            await self._shut()
            raise
        self.account = login
        self._phase = "open"
        return login

    async def close(self, *, logout: bool = False) -> None:
        """Say goodbye on the socket, close it (``logout``: revoke the token), end the session.

        Idempotent; requests still waiting fail with :class:`NotConnectedError`.
        """
        self._phase = "closing"
        if self.socket is not None:
            goodbye = serialize(DisconnectMessage(reason="client disconnect")).encode()
            await self.socket.close(goodbye=goodbye)
        if logout and self.rest.token is not None:
            try:
                await self.rest.post("/api/auth/logout")
            except MeshError as exc:
                logger.debug("logout failed: %s", exc)
        await self._shut()

    async def _shut(self) -> None:
        self._phase = "closing"
        if self.socket is not None:
            await self.socket.close()
        self._fail_pending("the client disconnected")
        await self.rest.close()
        self._phase = "closed"

    # -- requests over the socket -------------------------------------------------------------

    def require_socket(self) -> LobbySocket:
        if self.socket is None or self._phase not in ("open", "lost"):
            raise NotConnectedError("not connected: call connect() first")
        return self.socket

    async def send(self, msg: BaseMessage) -> str:
        """Send one message to the lobby; returns its ``message_id``."""
        await self.require_socket().send(msg)
        return msg.message_id

    async def request(self, msg: BaseMessage) -> dict[str, Any]:
        """Send a request the lobby answers with ACK or ERROR (``ref_id``); the ACK's details.

        Raises :class:`ApiError` with the ERROR's code (``status`` 0), or
        :class:`NotConnectedError` when the socket is down or no answer came in
        ``request_timeout`` seconds.
        """
        socket = self.require_socket()
        fut: asyncio.Future[AckMessage] = asyncio.get_running_loop().create_future()
        self._pending[msg.message_id] = fut
        try:
            await socket.send(msg)
            try:
                ack = await asyncio.wait_for(fut, self.request_timeout)
            except TimeoutError as exc:
                raise NotConnectedError(
                    f"no answer from the lobby to {msg.type} in {self.request_timeout:g} s"
                ) from exc
        finally:
            self._pending.pop(msg.message_id, None)
        return dict(ack.details or {})

    # -- typed REST calls ---------------------------------------------------------------------

    async def fetch_status(self) -> StatusResponse:
        """``GET /api/status``: checks the protocol version and takes the lobby's ticket key."""
        data = await self.rest.get("/api/status", auth=False)
        version = data.get("protocol_version") if isinstance(data, dict) else None
        try:
            check_version(str(version))
        except ProtocolError as exc:
            raise ApiError(str(exc), code=ErrorCode.VERSION_MISMATCH, status=0) from exc
        status = read_body(StatusResponse, data, what="GET /api/status")
        try:
            self.lobby_public_key = b64url_decode(status.lobby_public_key)
            self.lobby_accepted_keys = decode_keys(status.lobby_accepted_keys)
        except ValueError as exc:
            raise ApiError(
                "the lobby status has no valid lobby_public_key", code=ErrorCode.UNAVAILABLE
            ) from exc
        self.status = status
        return status

    async def register(self, username: str, password: str) -> RegisterResponse:
        """``POST /api/auth/register``."""
        return await self.rest.call(
            RegisterResponse,
            "POST",
            "/api/auth/register",
            {"username": username, "password": password},
            auth=False,
        )

    async def characters(self) -> list[CharacterOut]:
        """``GET /api/characters``."""
        listed = await self.rest.call(CharacterListResponse, "GET", "/api/characters")
        return listed.characters

    async def create_character(self, name: str, faction: str, character_class: str) -> CharacterOut:
        """``POST /api/characters``."""
        body = {"name": name, "faction": faction, "character_class": character_class}
        return await self.rest.call(CharacterOut, "POST", "/api/characters", body)

    async def delete_character(self, character_id: int) -> None:
        """``DELETE /api/characters/{id}``."""
        await self.rest.delete(f"/api/characters/{int(character_id)}")

    async def select(self, body: dict[str, Any]) -> CharacterSelectResponse:
        """``POST /api/characters/select`` (``character_id`` and the node's keys/endpoints)."""
        return await self.rest.call(CharacterSelectResponse, "POST", "/api/characters/select", body)

    async def peer(self, target: int | str) -> PeerInfoOut:
        """``GET /api/peers/{id}`` or ``GET /api/peers?name=``: a peer directory entry."""
        if isinstance(target, int):
            return await self.rest.call(PeerInfoOut, "GET", f"/api/peers/{target}")
        return await self.rest.call(PeerInfoOut, "GET", "/api/peers", params={"name": target})

    async def pair(self, character_id: int) -> PeerInfoOut:
        """``POST /api/peers/{id}/pair``: pair with a character to whisper it (full entry)."""
        return await self.rest.call(PeerInfoOut, "POST", f"/api/peers/{int(character_id)}/pair")

    async def ice_servers(self) -> IceServersOut:
        """``GET /api/turn/credentials``: STUN servers and time-limited TURN credentials."""
        return await self.rest.call(IceServersOut, "GET", "/api/turn/credentials")

    # -- internals ----------------------------------------------------------------------------

    def _fail_pending(self, why: str) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(NotConnectedError(why))
        self._pending.clear()

    def _on_socket_state(self, state: SocketState) -> None:
        for want, waiter in list(self._state_waiters):
            if want == state and not waiter.done():
                waiter.set_result(None)
        if state in ("reconnecting", "closed"):
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(NotConnectedError(f"the lobby connection is {state}"))
        if state == "closed" and self._phase == "open":
            # The socket gave up (session ended, or reconnection attempts exhausted).
            self._phase = "lost"
            self._on_lost()

    def _on_socket_message(self, msg: BaseMessage) -> None:
        if isinstance(msg, AckMessage | ErrorMessage) and msg.ref_id is not None:
            fut = self._pending.get(msg.ref_id)
            if fut is not None and not fut.done():
                if isinstance(msg, AckMessage):
                    fut.set_result(msg)
                else:
                    fut.set_exception(
                        ApiError(msg.error_message, code=msg.error_code, details=msg.details)
                    )
        self._on_message(msg)

    async def _ws_sealer(self, status: StatusResponse) -> FernetSealer | None:
        if not self._encryption_enabled:
            return None
        if not self._encryption_key:
            raise ApiError(
                "encryption_enabled needs an encryption_key (the secret shared with the lobby)",
                code=ErrorCode.VALIDATION_ERROR,
            )
        if "fernet" not in status.ws_encodings:
            raise ApiError(
                "the lobby does not offer Fernet WebSocket encryption (ws_encodings in "
                "/api/status); refusing to send in the clear with encryption_enabled=True",
                code=ErrorCode.UNAVAILABLE,
            )
        # PBKDF2 with 100,000 iterations takes ~0.1 s: keep it off the event loop.
        key = await asyncio.to_thread(derive_fernet_key, self._encryption_key, WS_FERNET_SALT)
        return FernetSealer(key)


def decode_keys(texts: list[str]) -> tuple[bytes, ...]:
    """The well-formed raw 32-byte keys among ``texts`` (unpadded base64url); others dropped."""
    keys = []
    for text in texts:
        try:
            raw = b64url_decode(text)
        except ValueError:
            continue
        if len(raw) == 32:
            keys.append(raw)
    return tuple(keys)
