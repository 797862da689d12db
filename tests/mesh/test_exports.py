"""The public names of ``mesh`` and ``mesh.discovery``: each in ``__all__`` resolves."""

from __future__ import annotations

import pytest

import mesh
import mesh.discovery


@pytest.mark.parametrize("module", [mesh, mesh.discovery], ids=lambda m: m.__name__)
def test_every_exported_name_resolves(module: object) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(module, name) is not None, name


def test_lan_and_discovery_names_at_the_top() -> None:
    from mesh import (
        LanGroupAuth,
        LanNode,
        LobbyDirectory,
        MdnsDiscovery,
        PeerConnected,
        PeerDisconnected,
        PeerFound,
        PeerLost,
    )
    from mesh.discovery import LobbyDirectory as FromDiscovery

    assert LobbyDirectory is FromDiscovery
    assert {LanGroupAuth, LanNode, MdnsDiscovery, PeerFound, PeerLost} <= {
        getattr(mesh.discovery, n) for n in mesh.discovery.__all__
    }
    assert PeerConnected.__module__ == PeerDisconnected.__module__ == "mesh.events"


SHARED_VERBS = (
    "register_handler",
    "unregister_handler",
    "send_whisper",
    "send_party_chat",
    "send_position_update",
)
"""NetworkClient's (the seed's) names for the game actions every front end offers."""

OLD_VERBS = ("whisper", "party_chat", "move", "send_position")


@pytest.mark.parametrize("cls", [mesh.NetworkClient, mesh.PeerNode, mesh.LanNode])
def test_one_verb_set_for_the_same_actions(cls: type) -> None:
    assert [v for v in SHARED_VERBS if not callable(getattr(cls, v, None))] == []
    assert [v for v in OLD_VERBS if hasattr(cls, v)] == []
