"""``SHARDS_P2P_*`` environment variables for :class:`MeshConfig`: read only by
:meth:`MeshConfig.from_env` (and so by a node built without a config, and by
``python -m mesh``), never by ``MeshConfig()``; a bad value is one MeshConfigError."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from pathlib import Path

import pytest

from mesh.config import MeshConfig
from mesh.discovery import LanNode
from protocol.errors import MeshConfigError, ShardsError

REPO = Path(__file__).resolve().parents[2]


def test_the_dataclass_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARDS_P2P_MAX_CONNECTIONS", "3")
    assert MeshConfig().max_connections == 10
    assert MeshConfig.from_env().max_connections == 3


def test_every_tunable_is_read_from_its_variable() -> None:
    defaults = MeshConfig()
    changed: dict[str, object] = {}
    environ: dict[str, str] = {"SHARDS_P2P_PORT": "9001", "SHARDS_OTHER": "x"}
    for field in dataclasses.fields(MeshConfig):
        value = getattr(defaults, field.name)
        if isinstance(value, bool):
            new: object = not value
            text = "false" if value else "yes"
        elif isinstance(value, int):
            new = value + 1
            text = str(new)
        else:
            new = value * 2
            text = repr(new)
        changed[field.name] = new
        environ[f"SHARDS_P2P_{field.name.upper()}"] = text
    config = MeshConfig.from_env(environ)
    assert dataclasses.asdict(config) == changed
    assert MeshConfig.from_env({}) == defaults
    assert MeshConfig.from_env(environ, max_connections=1).max_connections == 1  # overrides win


def test_bad_values_are_one_error_naming_each() -> None:
    environ = {
        "SHARDS_P2P_MAX_CONNECTIONS": "ten",
        "SHARDS_P2P_TICK_INTERVAL": "-0.5",
        "SHARDS_P2P_ACK_TUNING": "maybe",
        "SHARDS_P2P_IDLE_TIMEOUT": "nan",
        "SHARDS_P2P_MAX_CONECTIONS": "5",
    }
    with pytest.raises(MeshConfigError) as exc:
        MeshConfig.from_env(environ)
    assert isinstance(exc.value, ShardsError)
    message = str(exc.value)
    for key in environ:
        assert key in message, key
    assert "no such mesh setting" in message and "not a whole number" in message


def test_a_node_without_a_config_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARDS_P2P_KEEPALIVE_INTERVAL", "7.5")
    lan = LanNode(name="Env", passphrase="x", interfaces=["127.0.0.1"])
    assert lan.node.config.keepalive_interval == 7.5
    given = LanNode(name="Own", passphrase="x", interfaces=["127.0.0.1"], config=MeshConfig())
    assert given.node.config.keepalive_interval == MeshConfig().keepalive_interval


async def test_python_m_mesh_refuses_a_bad_variable_with_status_2() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDS_")}
    env.update(PYTHONPATH=str(REPO), SHARDS_P2P_SEND_TIMEOUT="soon")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mesh", "--lan", "--name", "A", "--passphrase", "x",
        "--interface", "127.0.0.1", "--port", "0", env=env, cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert out == b""
    assert b"SHARDS_P2P_SEND_TIMEOUT='soon': not a number" in err
    assert err.count(b"\n") == 1 and b"Traceback" not in err
