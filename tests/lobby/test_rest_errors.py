"""Every bad REST request gets a JSON error body with a stable code and the right status."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from lobby import MasterServer
from tests.lobby.support import ApiClient, FakeClock, fast_settings, signed_up


async def test_error_shapes(lobby: MasterServer, make_client: object) -> None:
    client: ApiClient = make_client()  # type: ignore[operator]
    cases = [
        ("POST", "/api/auth/register", b"{nope", 400, "invalid_json"),
        ("POST", "/api/auth/register", b"[1, 2]", 400, "invalid_json"),
        ("POST", "/api/auth/register", b"", 400, "invalid_json"),
        (
            "POST",
            "/api/auth/register",
            b'{"username": "ab", "password": "x"}',
            422,
            "validation_error",
        ),
        (
            "POST",
            "/api/auth/register",
            b'{"username": "okname", "password": "longenough", "extra": 1}',
            422,
            "validation_error",
        ),
        ("GET", "/api/nothing-here", None, 404, "not_found"),
        ("PUT", "/api/status", None, 405, "bad_request"),
        ("POST", "/api/auth/login", b'{"username": "x"}', 422, "validation_error"),
    ]
    for method, path, data, status, code in cases:
        got_status, body, _ = await client.call(
            method, path, data=data, headers={"Content-Type": "application/json"}
        )
        assert (got_status, body["code"]) == (status, code), (method, path, data, body)
        assert isinstance(body["message"], str) and body["message"]
        assert isinstance(body["details"], dict)
    # validation details name the field and never echo the input (no passwords in answers)
    _, body, _ = await client.call(
        "POST", "/api/auth/register", {"username": "fine_name", "password": "pw9Zq"}
    )
    assert body["details"]["errors"][0]["loc"] == ["body", "password"]
    assert "pw9Zq" not in str(body)


async def test_body_over_the_limit_is_413(lobby: MasterServer, make_client: object) -> None:
    client: ApiClient = make_client()  # type: ignore[operator]
    big = b'{"username": "' + b"a" * (lobby.settings.max_body_size + 10) + b'"}'
    status, body, _ = await client.call(
        "POST", "/api/auth/register", data=big, headers={"Content-Type": "application/json"}
    )
    assert (status, body["code"]) == (413, "payload_too_large")


async def test_rest_rate_limits_per_address_and_account(
    tmp_path: Path, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    settings = fast_settings(
        tmp_path / "d",
        rest_burst_per_address=20,
        rest_rate_per_address=1,
        rest_burst_per_account=5,
        rest_rate_per_account=1,
    )
    async with MasterServer(settings=settings, clock=clock) as server:
        client = await signed_up(server.url, http, "busy")
        statuses = []
        for _ in range(6):
            status, body, resp = await client.call("GET", "/api/characters")
            statuses.append(status)
        assert statuses == [200] * 5 + [429]
        assert body["code"] == "rate_limited" and body["details"]["scope"] == "account"
        assert resp.headers["Retry-After"] == "1"
        clock.advance(1)
        assert (await client.call("GET", "/api/characters"))[0] == 200
        seen = []
        for _ in range(20):
            status, body, _ = await client.call("GET", "/api/status")
            seen.append(status)
        assert seen[-1] == 429 and body["details"]["scope"] == "address"


async def test_deeply_nested_body_is_400_and_lobby_keeps_serving(
    lobby: MasterServer, make_client: object
) -> None:
    client: ApiClient = make_client()  # type: ignore[operator]
    for nested in (b"[" * 5000, b'{"a":' * 5000, b"[" * 30_000 + b"]" * 30_000):
        status, body, _ = await client.call(
            "POST", "/api/auth/register", data=nested, headers={"Content-Type": "application/json"}
        )
        assert (status, body["code"]) == (400, "invalid_json"), body
        assert "nested" in body["message"] or "JSON" in body["message"]
    status, body, _ = await client.call("GET", "/api/status")
    assert status == 200, body
