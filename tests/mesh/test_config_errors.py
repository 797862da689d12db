"""Bad endpoints and settings raise MeshError subclasses (one except clause), never ValueError."""

from __future__ import annotations

import pytest

from mesh.client import NetworkClient
from mesh.client.rest import LobbyRest
from protocol.errors import ErrorCode, LobbyError, MeshConfigError, MeshError

from .conftest import NodeFactory, ticket_of


@pytest.mark.parametrize("endpoint", ["no-port", "127.0.0.1:", "127.0.0.1:abc", "127.0.0.1:70000"])
async def test_connect_to_a_malformed_endpoint_is_a_mesh_error(
    make_node: NodeFactory, endpoint: str
) -> None:
    a = await make_node()
    b = await make_node()
    with pytest.raises(MeshError, match="host:port") as info:
        await a.connect(ticket_of(b), endpoint)
    assert info.value.code == ErrorCode.BAD_REQUEST
    assert not isinstance(info.value, ValueError)
    assert b.peer_id not in a.peers


def test_server_url_without_http_scheme_is_a_mesh_config_error() -> None:
    rest = LobbyRest("ftp://127.0.0.1:1")
    with pytest.raises(MeshError, match="server_url") as info:
        _ = rest.ws_url
    assert isinstance(info.value, MeshConfigError) and not isinstance(info.value, LobbyError)
    assert LobbyRest("https://lobby.example/").ws_url == "wss://lobby.example/ws"


@pytest.mark.parametrize("value", ["abc", "70000", "-5"])
def test_bad_shards_p2p_port_is_a_mesh_config_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SHARDS_P2P_PORT", value)
    with pytest.raises(MeshError, match="SHARDS_P2P_PORT") as info:
        NetworkClient("http://127.0.0.1:1")
    assert isinstance(info.value, MeshConfigError) and not isinstance(info.value, LobbyError)
    assert info.value.code == ErrorCode.BAD_REQUEST


def test_good_shards_p2p_port_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARDS_P2P_PORT", "0")
    assert NetworkClient("http://127.0.0.1:1").peers.settings.port == 0
    monkeypatch.delenv("SHARDS_P2P_PORT")  # unset: the node's own default (None)
    assert NetworkClient("http://127.0.0.1:1").peers.settings.port is None
