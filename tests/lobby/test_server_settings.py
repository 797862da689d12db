"""MasterServer keyword overrides are validated; lifecycle misuse raises LobbyError."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from lobby import MasterServer
from lobby.config import LobbySettings
from protocol.errors import ConfigError, ErrorCode, LobbyError, ShardsError
from tests.lobby.support import fast_settings


@pytest.mark.parametrize("port", [70000, -1])
def test_out_of_range_port_is_a_config_error(port: int, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="port") as info:
        MasterServer(port=port, data_dir=tmp_path)
    assert isinstance(info.value, ShardsError)
    assert info.value.code == ErrorCode.BAD_REQUEST


def test_overrides_keep_every_other_setting(tmp_path: Path) -> None:
    base = LobbySettings(
        port=1234,
        data_dir=tmp_path / "a",
        world_file=tmp_path / "world.json",
        ws_fernet_secret=SecretStr("not-empty"),
        admin_accounts=["Alice"],
        argon2_time_cost=1,
    )
    server = MasterServer(port=0, data_dir=tmp_path / "b", settings=base)
    got = server.settings
    assert got.port == 0
    assert got.data_dir == tmp_path / "b"
    assert isinstance(got.world_file, Path)
    assert got.world_file == tmp_path / "world.json"
    assert got.ws_fernet_secret is not None
    assert got.ws_fernet_secret.get_secret_value() == "not-empty"
    assert got.admin_accounts == ["alice"]
    assert got.argon2_time_cost == 1
    assert got.model_dump(exclude={"port", "data_dir"}) == base.model_dump(
        exclude={"port", "data_dir"}
    )


def test_no_overrides_keeps_the_settings_object(tmp_path: Path) -> None:
    base = fast_settings(tmp_path)
    assert MasterServer(settings=base).settings is base


async def test_lifecycle_misuse_raises_lobby_error(tmp_path: Path) -> None:
    server = MasterServer(settings=fast_settings(tmp_path))
    with pytest.raises(LobbyError, match="not started"):
        _ = server.port
    with pytest.raises(LobbyError, match="not started"):
        _ = server.ctx
    async with server:
        with pytest.raises(LobbyError, match="already started"):
            await server.start()
        with pytest.raises(LobbyError, match="before start"):
            server.add_service(object())  # type: ignore[arg-type]
