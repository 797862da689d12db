"""Settings, rate limits, lockout and the lobby key, without a server."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from lobby import LobbySettings
from lobby.keys import KEY_FILE_NAME, load_or_create_key
from lobby.ratelimit import RateLimiter, retry_after_header
from protocol.errors import ConfigError
from tests.lobby.support import FakeClock


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARDS_PORT", "9123")
    monkeypatch.setenv("SHARDS_SESSION_TTL", "60")
    monkeypatch.setenv("SHARDS_ADMIN_ACCOUNTS", '["Root", " gm "]')
    s = LobbySettings()
    assert (s.port, s.session_ttl) == (9123, 60.0)
    assert s.is_admin("ROOT") and s.is_admin("gm") and not s.is_admin("player")
    assert s.resolved_database_url.startswith("sqlite:///")
    assert LobbySettings(database_url="postgresql://h/d").resolved_database_url == (
        "postgresql://h/d"
    )


def test_token_bucket_refills_with_the_clock() -> None:
    clock = FakeClock(1000.0)
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.hit("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.hit("k") == pytest.approx(0.5)
    assert limiter.hit("other") == 0.0
    clock.advance(0.5)
    assert limiter.hit("k") == 0.0
    assert retry_after_header(0.2) == "1" and retry_after_header(2.1) == "3"


def test_limiter_memory_is_bounded() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=FakeClock(), max_keys=100)
    for i in range(1000):
        limiter.hit(("addr", i))
    assert len(limiter) == 100


def test_lobby_key_is_created_private_and_reloaded(tmp_path: Path) -> None:
    first = load_or_create_key(tmp_path)
    path = tmp_path / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(tmp_path).public_key == first.public_key
    assert len(first.public_key_b64) == 43 and len(first.peer_id) == 32
    path.chmod(0o644)
    load_or_create_key(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="unusable"):
        load_or_create_key(tmp_path)


def test_inconsistent_ws_limits_are_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="ws_hard_max_message_size"):
        LobbySettings(ws_max_message_size=4096, ws_hard_max_message_size=1024)
    with pytest.raises(ValidationError, match="ws_backlog_max"):
        LobbySettings(ws_send_queue_max=10, ws_backlog_max=20)
