"""AutoNAT's client changes its verdict only when several servers agree
(core/network/nat/autonat.py); the lab tests (test_nat_lab.py) show the real dial-backs behind
and outside a NAT."""

from __future__ import annotations

import time

from libp2p.peer.id import ID

from core.network.nat.autonat import CONFIRMATIONS, PRIVATE, PUBLIC, UNKNOWN, AutoNatClient
from core.peer import new_peer
from core.profile import identity
from tests.conftest import fast_config


def _server() -> ID:
    return ID.from_pubkey(identity.generate().public_key)


def test_one_server_is_not_enough_and_the_majority_decides() -> None:
    changes: list[str] = []
    client = AutoNatClient(new_peer(fast_config()).host, changes.append)
    now = time.monotonic()
    client._answers[_server()] = (PUBLIC, now)
    client._decide()
    assert client.status == UNKNOWN and CONFIRMATIONS >= 2
    client._answers[_server()] = (PUBLIC, now)
    client._decide()
    assert client.status == PUBLIC and changes == [PUBLIC]
    # Two servers now fail to dial us back, two still can: no majority, no change.
    client._answers[_server()] = (PRIVATE, now)
    client._answers[_server()] = (PRIVATE, now)
    client._decide()
    assert client.status == PUBLIC
    client._answers[_server()] = (PRIVATE, now)
    client._decide()
    assert client.status == PRIVATE and changes == [PUBLIC, PRIVATE]


def test_claims_never_include_loopback_private_or_circuit_addresses() -> None:
    client = AutoNatClient(new_peer(fast_config()).host, lambda _s: None)
    assert client.claims() == []  # a loopback-only peer has nothing to ask about
