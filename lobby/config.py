"""Lobby settings: one pydantic-settings model read from arguments, ``SHARDS_*``
variables and an optional TOML file.

Every knob of the master server lives in :class:`LobbySettings`. Values come, in
order of precedence, from keyword arguments (``python -m lobby``'s flags), then
``SHARDS_<NAME>`` environment variables (``SHARDS_PORT=9000``,
``SHARDS_ADMIN_ACCOUNTS='["alice"]'``), then a TOML file of ``name = value`` lines
(:func:`read_config_file`; ``--config FILE``), then the defaults below. Durations
are seconds, sizes bytes, rates events per second. Every field has a description:
``python -m lobby --help`` is generated from them.

The password hashing parameters default to argon2-cffi's RFC 9106 "low memory"
profile (time cost 3, 64 MiB, 4 lanes). Tests may lower them
(``argon2_time_cost=1, argon2_memory_cost=1024, argon2_parallelism=1``) to stay
fast; a production lobby must never do so.

``ws_fernet_secret`` (``SHARDS_WS_FERNET_SECRET``) turns on the original specification's Fernet
WebSocket encoding (see :mod:`lobby.http.ws`); it is a :class:`~pydantic.SecretStr`,
shown as ``**********`` in every repr, dump and log.

``Clock`` is the type of the injectable wall clock: a callable returning seconds
since the epoch (``time.time`` by default). Sessions, rate limits, lockouts and
the reconnect grace read time only through it, so a test advances a fake clock
instead of sleeping.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from protocol.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "Clock",
    "LobbySettings",
    "describe_invalid",
    "env_name",
    "load_settings",
    "read_config_file",
]

ENV_PREFIX = "SHARDS_"
"""Prefix of every lobby setting's environment variable."""

Clock = Callable[[], float]
"""Wall clock in seconds since the epoch (``time.time`` shape)."""

_TURN_URL = re.compile(
    r"turns?:(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::[0-9]{1,5})?(?:\?transport=(?:udp|tcp))?"
)
"""A TURN server URI (RFC 7065): ``turn[s]:host[:port][?transport=udp|tcp]``."""


def _split_turn_urls(value: object) -> object:
    """``"a,b"`` or ``["a,b", "c"]`` -> ``["a", "b", "c"]`` (other values unchanged)."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list | tuple):
        return [u.strip() for v in value if isinstance(v, str) for u in v.split(",") if u.strip()]
    return value


class LobbySettings(BaseSettings):
    """Every setting of the master lobby (environment prefix ``SHARDS_``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # arguments > environment > the TOML file being loaded (load_settings) > defaults
        toml = _TomlSource(settings_cls)
        return (init_settings, env_settings, dotenv_settings, toml, file_secret_settings)

    # -- where ------------------------------------------------------------------------
    host: str = Field(
        default="127.0.0.1", description="address to listen on (0.0.0.0: every interface)"
    )
    port: int = Field(
        default=8888, ge=0, le=65535, description="TCP port of REST and WebSocket; 0 = any free"
    )
    listen_backlog: int = Field(
        default=4096,
        ge=1,
        description="connections the kernel queues before the lobby accepts them (capped by "
        "net.core.somaxconn); room for every client reconnecting at once after a restart",
    )
    data_dir: Path = Field(
        default=Path("shards-data"),
        description="directory of the SQLite database, the ticket signing key and the lock",
    )
    database_url: str | None = Field(
        default=None,
        description="sqlite:///path or postgresql://user:pw@host/db; unset: SQLite in data_dir",
    )
    world_file: Path | None = Field(
        default=None, description="world definition JSON; unset: the shipped lobby/data/world.json"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="least severe log level written to stderr"
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="log lines as text, or one JSON object per line (with request/session ids)",
    )
    trust_forwarded_for: bool = Field(
        default=False,
        description="take the client address from X-Forwarded-For (only behind a trusted proxy)",
    )

    # -- sessions -----------------------------------------------------------------------
    session_ttl: float = Field(
        default=3600.0, gt=0, description="a session token expires this long after its last use"
    )
    session_touch_interval: float = Field(
        default=30.0, ge=0, description="a session's sliding expiry is written at most this often"
    )
    maintenance_interval: float = Field(
        default=1.0, gt=0, description="how often expiries (sessions, grace) are checked"
    )
    session_cleanup_interval: float = Field(
        default=60.0, gt=0, description="how often expired sessions are deleted from the database"
    )
    reconnect_grace: float = Field(
        default=30.0,
        ge=0,
        description="a dropped WebSocket keeps its presence and backlog this long for a reconnect",
    )

    # -- passwords (argon2id) --------------------------------------------------------------
    argon2_time_cost: int = Field(default=3, ge=1, description="argon2id passes over memory")
    argon2_memory_cost: int = Field(
        default=65536, ge=8, description="argon2id memory per hash, KiB"
    )
    argon2_parallelism: int = Field(default=4, ge=1, description="argon2id lanes")
    hash_pool: Literal["process", "thread"] = Field(
        default="process", description="where hashing runs: worker processes, or threads"
    )
    hash_workers: int | None = Field(
        default=None, ge=1, le=64, description="hashes in flight; unset: max(1, CPUs - 1)"
    )
    hash_queue_max: int = Field(
        default=64, ge=0, description="requests waiting for a hash; more get 503 unavailable"
    )

    # -- REST -----------------------------------------------------------------------------
    max_body_size: int = Field(
        default=64 * 1024, ge=1024, description="largest REST request body (bytes); bigger: 413"
    )
    rest_rate_per_address: float = Field(
        default=50.0, gt=0, description="REST requests per second from one address"
    )
    rest_burst_per_address: float = Field(
        default=200.0, ge=1, description="REST requests one address may send at once"
    )
    rest_rate_per_account: float = Field(
        default=20.0, gt=0, description="REST requests per second of one account"
    )
    rest_burst_per_account: float = Field(
        default=60.0, ge=1, description="REST requests one account may send at once"
    )
    login_max_failures_per_account: int = Field(
        default=5, ge=1, description="failed logins to an account from one address within "
        "login_failure_window that lock that address (only) out of it for login_lockout",
    )  # fmt: skip
    login_max_failures_per_address: int = Field(
        default=50, ge=1, description="failed logins an hour from one address (all accounts) "
        "before it may only log in to accounts it logged in to before",
    )  # fmt: skip
    login_failure_window: float = Field(
        default=300.0, gt=0, description="seconds over which failed logins to an account count"
    )
    login_lockout: float = Field(
        default=300.0, gt=0, description="seconds an address stays locked out of an account"
    )
    login_account_failures_per_hour: int = Field(
        default=30, ge=1, description="failed logins an hour to one account from addresses "
        "that never logged in to it (as many again from those that did)",
    )  # fmt: skip
    login_known_addresses: int = Field(
        default=8, ge=1, description="addresses remembered per account as known-good"
    )

    # -- HTTP connections (lobby.http.guard) ---------------------------------------------
    http_header_timeout: float = Field(
        default=10.0,
        gt=0,
        description="a request's line and headers must arrive within this many seconds of its "
        "first byte, or the connection is closed (slowloris)",
    )
    http_body_timeout: float = Field(
        default=30.0,
        gt=0,
        description="a request body must arrive within this many seconds of its headers "
        "(else 400 and the connection is closed)",
    )
    http_keepalive_timeout: float = Field(
        default=60.0,
        gt=0,
        description="close a connection idle this long between requests (or before its first)",
    )
    http_max_connections_per_address: int = Field(
        default=64,
        ge=0,
        description="open TCP connections (WebSockets included) from one peer address; the "
        "next one is answered 429 and closed; 0 = no cap (behind a proxy: the proxy's address)",
    )

    # -- WebSocket ------------------------------------------------------------------------
    ws_max_message_size: int = Field(
        default=64 * 1024, ge=256, description="bigger text frames get ERROR message_too_large"
    )
    ws_hard_max_message_size: int = Field(
        default=1024 * 1024, ge=256, description="bigger frames close the socket with 1009"
    )
    ws_send_queue_max: int = Field(
        default=512, ge=1, description="queued outgoing messages before a slow client is cut off"
    )
    ws_batch_max_messages: int = Field(
        default=64, ge=1, description="most messages the lobby sends in one WebSocket frame"
    )
    ws_batch_max_bytes: int = Field(
        default=64 * 1024, ge=256, description="largest batched WebSocket frame the lobby sends"
    )
    ws_backlog_max: int = Field(
        default=256, ge=0, description="messages kept for a client inside the reconnect grace"
    )
    ws_compress: bool = Field(default=False, description="offer permessage-deflate")
    ws_heartbeat: float | None = Field(default=30.0, gt=0, description="ping interval")
    ws_idle_timeout: float = Field(
        default=300.0, gt=0, description="close after this long without a client message"
    )
    ws_close_timeout: float = Field(
        default=5.0, gt=0, description="seconds to wait for a client's close frame"
    )
    ws_message_rate: float = Field(
        default=20.0, gt=0, description="WS messages per second from one connection"
    )
    ws_message_burst: float = Field(
        default=60.0, ge=1, description="WS messages one connection may send at once"
    )
    ws_address_message_rate: float = Field(
        default=200.0, gt=0, description="WS messages per second from one source address"
    )
    ws_address_message_burst: float = Field(
        default=400.0, ge=1, description="WS messages one source address may send at once"
    )
    ws_flood_strikes: int = Field(
        default=5, ge=1, description="rate-limited messages tolerated before closing with 1008"
    )
    ws_connections_per_account: int = Field(
        default=8, ge=1, description="open WebSockets of one account"
    )
    ws_fernet_secret: SecretStr | None = Field(
        default=None,
        description="shared secret of the optional Fernet frame encoding (/ws?encoding=fernet); "
        "unset: only plain JSON frames",
    )
    ws_fernet_ttl: float = Field(
        default=60.0, gt=0, description="oldest Fernet frame (seconds) the lobby opens"
    )

    # -- chat -----------------------------------------------------------------------------
    chat_max_length: int = Field(default=500, ge=1, description="longest chat message (characters)")
    announcement_max_length: int = Field(
        default=2000, ge=1, description="longest announcement (characters)"
    )
    chat_rate: float = Field(default=1.0, gt=0, description="chat messages per second per account")
    chat_burst: float = Field(
        default=5.0, ge=1, description="chat messages one account may send at once"
    )
    admin_accounts: list[str] = Field(
        default_factory=list,
        description="usernames allowed to announce and to use /api/admin and the /admin page",
    )

    # -- STUN: Binding answers on UDP, for peers behind NATs (lobby/stun.py) ----------------
    stun_enabled: bool = Field(default=True, description="answer STUN Binding requests on UDP")
    stun_port: int | None = Field(
        default=None, ge=0, le=65535, description="UDP port; unset: the `port` number, 0 = any"
    )
    stun_rate_per_address: float = Field(
        default=20.0, gt=0, description="STUN requests per second from one address"
    )
    stun_burst_per_address: float = Field(
        default=40.0, ge=1, description="STUN requests one address may send at once"
    )
    stun_max_addresses: int = Field(
        default=65536, ge=1, description="source addresses the STUN rate limit remembers"
    )

    # -- rendezvous: candidates, pairing, TURN credentials (lobby/services/directory.py) ----
    allow_loopback_candidates: bool | None = Field(
        default=None,
        description="accept loopback candidates at select; unset: only when `host` is loopback",
    )
    turn_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="TURN servers, turn:host:port?transport=udp (comma-separated in SHARDS_)",
    )
    turn_secret: SecretStr | None = Field(
        default=None, description="the TURN server's use-auth-secret (credentials are its HMACs)"
    )
    turn_ttl: float = Field(default=3600.0, ge=60, le=7 * 86400, description="credential life")
    ice_rate: float = Field(default=0.2, gt=0, description="TURN credential requests/s/account")
    ice_burst: float = Field(
        default=10.0, ge=1, description="TURN credential requests an account may make at once"
    )
    pair_rate: float = Field(default=1.0, gt=0, description="whisper pairings/s/account")
    pair_burst: float = Field(
        default=20.0, ge=1, description="whisper pairings an account may ask for at once"
    )
    whisper_pair_ttl: float = Field(default=600.0, gt=0, description="a whisper pairing's life")

    @field_validator("turn_urls", mode="before")
    @classmethod
    def _split_turn_urls(cls, value: object) -> object:
        return _split_turn_urls(value)

    @field_validator("turn_urls")
    @classmethod
    def _check_turn_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if _TURN_URL.fullmatch(url) is None:
                raise ValueError(f"{url[:80]!r} is not turn[s]:host[:port][?transport=udp|tcp]")
        return value

    @model_validator(mode="after")
    def _turn_needs_a_secret(self) -> LobbySettings:
        secret = self.turn_secret.get_secret_value() if self.turn_secret is not None else ""
        if self.turn_urls and not secret:
            raise ValueError("turn_urls need turn_secret (credentials are issued from it)")
        if self.turn_secret is not None and not self.turn_urls:
            raise ValueError("turn_secret without turn_urls: name the TURN servers")
        return self

    @property
    def loopback_candidates(self) -> bool:
        """Whether loopback candidates are accepted (explicit, else: the lobby is on loopback)."""
        if self.allow_loopback_candidates is not None:
            return self.allow_loopback_candidates
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"

    # -- peer tickets ---------------------------------------------------------------------
    ticket_ttl: float = Field(
        default=3600.0, gt=0, description="seconds a peer ticket signed by the lobby stays valid"
    )

    # -- operations: Prometheus metrics (lobby.metrics) ------------------------------------
    metrics_enabled: bool = Field(default=True, description="serve GET /metrics (Prometheus)")
    metrics_host: str | None = Field(
        default=None, description="with metrics_port: address of the metrics listener (= host)"
    )
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="serve /metrics on this port only (0 = any free), not on the lobby's port",
    )
    metrics_process: str | None = Field(
        default=None, description="the process label of every metric; default hostname:pid"
    )

    # -- several lobby processes (lobby.cluster) ------------------------------------------
    redis_url: str | None = Field(
        default=None,
        description="redis://host:port/db: run as one of several lobby processes sharing "
        "pushes, presence and rate limits through this Redis (needs the 'scale' extra); "
        "unset: one process, nothing shared but the database",
    )
    cluster_prefix: str = Field(
        default="shards", min_length=1, description="prefix of every Redis key and channel"
    )
    cluster_process_id: str | None = Field(
        default=None, description="this process's name in the cluster; default host:pid:random"
    )
    cluster_heartbeat: float = Field(
        default=2.0, gt=0, description="how often a process renews its liveness key"
    )
    cluster_presence_ttl: float = Field(
        default=6.0, gt=0, description="a process silent this long is dead: its players drop out"
    )
    cluster_lock_ttl: float = Field(
        default=10.0,
        gt=0,
        description="a cluster lock whose holder died (or stalled) frees itself after this "
        "long; a stalled holder's late writes are then refused by its fencing token",
    )
    ticket_key_file: Path | None = Field(
        default=None,
        description="the ticket signing key (PEM, created if absent); every process of a "
        "cluster uses the same one; default data_dir/lobby_key.pem",
    )
    ticket_accepted_keys: list[str] = Field(
        default_factory=list,
        description="other lobby public keys (unpadded base64url) whose tickets peers "
        "accept too: the old or the next key of a rotation (see lobby.keys)",
    )

    @field_validator("admin_accounts")
    @classmethod
    def _fold_admins(cls, value: list[str]) -> list[str]:
        return [name.strip().casefold() for name in value if name.strip()]

    @field_validator("ws_fernet_secret")
    @classmethod
    def _secret_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("ws_fernet_secret must not be empty (leave it unset to turn it off)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LobbySettings:
        if self.ws_hard_max_message_size < self.ws_max_message_size:
            raise ValueError("ws_hard_max_message_size must be >= ws_max_message_size")
        if self.cluster_presence_ttl <= self.cluster_heartbeat:
            raise ValueError("cluster_presence_ttl must be longer than cluster_heartbeat")
        if self.ws_backlog_max > self.ws_send_queue_max:
            raise ValueError("ws_backlog_max must be <= ws_send_queue_max (it is replayed into it)")
        return self

    @property
    def resolved_database_url(self) -> str:
        """The database URL to use: the explicit one, or SQLite in ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'lobby.sqlite3').resolve()}"

    def is_admin(self, username: str) -> bool:
        """True if ``username`` is one of the admin accounts (case-insensitive)."""
        return username.casefold() in self.admin_accounts


_TOML_VALUES: ContextVar[Mapping[str, Any]] = ContextVar(
    "lobby_toml_values", default=MappingProxyType({})
)
"""The TOML file's values while :func:`load_settings` builds a :class:`LobbySettings`."""


class _TomlSource(PydanticBaseSettingsSource):
    """The values of the TOML file :func:`load_settings` is reading (none otherwise)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return _TOML_VALUES.get().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_TOML_VALUES.get())


@contextmanager
def _toml_values(values: Mapping[str, Any]) -> Iterator[None]:
    token = _TOML_VALUES.set(values)
    try:
        yield
    finally:
        _TOML_VALUES.reset(token)


def env_name(field: str) -> str:
    """The environment variable of setting ``field``: ``port`` -> ``SHARDS_PORT``."""
    return f"{ENV_PREFIX}{field.upper()}"


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings of a TOML file: top-level ``name = value`` pairs named like the fields
    of :class:`LobbySettings` (``port = 9000``, ``admin_accounts = ["alice"]``).

    Raises :class:`~protocol.errors.ConfigError` (one line, naming the file) when it
    cannot be read, is not TOML, or has keys that are not settings (each one named).
    Values are checked later, by :func:`load_settings`.
    """
    try:
        with open(path, "rb") as file:
            values = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None
    unknown = sorted(set(values) - set(LobbySettings.model_fields))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown settings: {', '.join(unknown)} "
            "(names are those of the SHARDS_* variables, lower case, without SHARDS_)"
        )
    return values


def load_settings(
    *,
    config_file: str | Path | None = None,
    labels: Mapping[str, str] | None = None,
    **overrides: Any,
) -> LobbySettings:
    """:class:`LobbySettings` from ``overrides``, the environment, then ``config_file``
    (TOML, :func:`read_config_file`); one-line errors.

    Raises :class:`~protocol.errors.ConfigError` naming each bad setting by where it
    came from: ``labels[field]`` (say ``--port``) or the field name for ``overrides``,
    ``FILE: field`` for the TOML file, else its environment variable (``SHARDS_PORT``).
    """
    values = read_config_file(config_file) if config_file is not None else {}
    try:
        with _toml_values(values):
            return LobbySettings(**overrides)
    except ValidationError as exc:
        names = {field: (labels or {}).get(field, field) for field in overrides}
        for field in values:
            names.setdefault(field, f"{config_file}: {field}")
        raise ConfigError(describe_invalid(exc, names=names)) from None


def describe_invalid(
    exc: ValidationError, *, given: Collection[str] = (), names: Mapping[str, str] | None = None
) -> str:
    """One line for a settings ``ValidationError``: each field (by ``names[field]``, the
    field name for fields in ``given``, else its ``SHARDS_*`` variable), its value and
    what is wrong with it."""
    problems = []
    for err in exc.errors(include_url=False, include_context=False):
        field = ".".join(str(p) for p in err["loc"])
        top = str(err["loc"][0]) if err["loc"] else ""
        if names and top in names:
            name = names[top] + field[len(top) :]
        elif not field or field in given:
            name = field
        else:
            name = env_name(field)
        value = err.get("input")
        secret = "secret" in field or "url" in field  # a database URL may hold a password
        plain = isinstance(value, str | int | float) and field and not secret
        shown = f"={value}" if plain else ""
        problems.append(f"{name or 'settings'}{shown}: {err['msg']}")
    return "invalid lobby settings: " + "; ".join(problems)
