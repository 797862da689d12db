"""What a lobby takes from its host before it serves: listening sockets and its data directory.

:func:`bind_listeners` binds the listening sockets first, so that a busy port is
reported before the database is opened or migrated. :class:`DataDir` prepares
the data directory: it is created with mode 0700, locked by one lobby at a time
(``lobby.lock``, an OS file lock the kernel releases when the process ends, even
on ``kill -9``), and the SQLite database in it is created 0600 (SQLite gives its
``-wal`` and ``-shm`` files the database file's mode) or, when it exists, must be
writable. Every failure is a :class:`~protocol.errors.ConfigError` whose message
is one line naming the path or address and what is wrong with it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from protocol.errors import ConfigError

__all__ = ["LOCK_FILE", "DataDir", "bind_listeners", "sqlite_path"]

LOCK_FILE = "lobby.lock"
"""The lock file inside the data directory (holds the owning process id)."""

_BACKLOG = 128  # aiohttp's default


def bind_listeners(host: str, port: int) -> list[socket.socket]:
    """Listening TCP sockets for ``host:port`` (every address ``host`` resolves to).

    ``host`` "" or "0.0.0.0" is every IPv4 address, "::" every IPv6 one. With
    port 0 the first socket picks the port and the others take the same one.
    """
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sockets: list[socket.socket] = []
    seen: set[tuple[int, str]] = set()
    try:
        for family, kind, proto, _, address in infos:
            key = (int(family), str(address[0]))
            if key in seen:
                continue
            seen.add(key)
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            bound_port = sockets[0].getsockname()[1] if len(sockets) > 1 else port
            sock.bind((address[0], bound_port, *address[2:]))
            sock.listen(_BACKLOG)
            sock.setblocking(False)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason += " (another lobby? choose another with --port, or --port 0 for any free one)"
        raise ConfigError(f"cannot listen on {host}:{port}: {reason}") from None
    return sockets


def sqlite_path(database_url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL, None for another database (or an in-memory one)."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        return None  # Database.open reports it
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


class DataDir:
    """The lobby's data directory, held by one lobby process at a time.

    ``acquire()`` creates it (0700) if missing, takes the lock, and checks the
    SQLite file; ``release()`` (idempotent) lets the next lobby in.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None

    def acquire(self, database: Path | None) -> None:
        """Create and lock the directory; make sure ``database`` (if SQLite) can be written."""
        where = f"data directory {self.path}"
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except FileExistsError:
            raise ConfigError(f"{where} is not a directory") from None
        except OSError as exc:
            raise ConfigError(f"{where}: cannot create it: {exc.strerror}") from None
        if not self.path.is_dir():
            raise ConfigError(f"{where} is not a directory")
        lock = self.path / LOCK_FILE
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(f"{where} is not writable: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                by = f" (pid {holder})" if holder else ""
                raise ConfigError(
                    f"{where} is in use by another lobby{by}; stop it, or give this one "
                    "another --data-dir"
                ) from None
            raise ConfigError(f"{where}: cannot lock {lock}: {exc.strerror}") from None
        self._lock_fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            if database is not None:
                _check_database(database)
        except OSError as exc:
            self.release()
            raise ConfigError(f"{where} is not writable: {exc.strerror}") from None
        except ConfigError:
            self.release()
            raise

    def release(self) -> None:
        """Unlock the directory (the lock file stays; its content is stale until the next)."""
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None


def _check_database(path: Path) -> None:
    """Create ``path`` 0600 when missing; refuse one (or its -wal/-shm) that cannot be written."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.close(fd)
    except OSError as exc:
        raise ConfigError(
            f"database file {path} cannot be opened for writing: {exc.strerror}"
            + (" (the lobby must write it)" if exc.errno in (errno.EACCES, errno.EROFS) else "")
        ) from None
    for suffix in ("-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        try:
            fd = os.open(extra, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(f"database file {extra} cannot be written: {exc.strerror}") from None
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
