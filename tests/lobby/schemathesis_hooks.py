"""Schemathesis hooks for the live-lobby run of ``test_schemathesis.py`` (``SCHEMATHESIS_HOOKS``).

Authentication: one account for the whole run; each token is a fresh login whose
session has a character selected (created first if the run deleted them all), so
a fuzzed ``POST /api/auth/logout`` or ``DELETE /api/characters/{id}`` never leaves
the run without a usable session (a 401 makes schemathesis fetch a new token).
"""

from __future__ import annotations

import os
from typing import Any

import requests
import schemathesis

__all__ = ["LobbyToken"]

CREDENTIALS = {"username": "fuzzer", "password": "correct horse"}


@schemathesis.auth(refresh_interval=30)
class LobbyToken:
    """A bearer token of the run's account with a character selected."""

    def get(self, case: Any, ctx: Any) -> str:
        base = os.environ["SHARDS_TEST_LOBBY_URL"]
        with requests.Session() as http:
            registered = http.post(f"{base}/api/auth/register", json=CREDENTIALS, timeout=30)
            assert registered.status_code in (201, 409), registered.text
            login = http.post(f"{base}/api/auth/login", json=CREDENTIALS, timeout=30)
            login.raise_for_status()
            token = str(login.json()["token"])
            http.headers["Authorization"] = f"Bearer {token}"
            listed = http.get(f"{base}/api/characters", timeout=30)
            listed.raise_for_status()
            characters = listed.json()["characters"]
            if characters:
                character_id = characters[0]["id"]
            else:
                created = http.post(
                    f"{base}/api/characters",
                    json={
                        "name": "Fuzzer",
                        "faction": "Crimson Covenant",
                        "character_class": "Warrior",
                    },
                    timeout=30,
                )
                created.raise_for_status()
                character_id = created.json()["id"]
            selected = http.post(
                f"{base}/api/characters/select", json={"character_id": character_id}, timeout=30
            )
            selected.raise_for_status()
        return token

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
