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


async def test_a_dial_back_comes_from_another_identity_and_leaves_the_pair_connected() -> None:
    """Two connected peers: B dials A back (as its AutoNAT service does, here to A's
    loopback listener, which a real request may not name). A registers a connection from a
    stranger, not a second one from B, and A and B keep the connection they had."""
    from typing import Any

    import multiaddr
    import trio

    from tests.conftest import peer_group

    async with peer_group(2) as [(a, _), (b, _)]:
        await a.connect(b.listen_addrs()[0])
        before = list(a.host.get_network().get_connections(b.peer_id))
        swarm: Any = a.host.get_network()
        registered: list[ID] = []
        add_conn = swarm.add_conn

        async def watching(muxed_conn: Any, *args: Any, **kwargs: Any) -> Any:
            registered.append(muxed_conn.peer_id)
            return await add_conn(muxed_conn, *args, **kwargs)

        swarm.add_conn = watching
        addr = multiaddr.Multiaddr(str(a.listen_addrs()[0]).split("/p2p/")[0])
        assert await b.autonat_service._dial_back(addr, a.peer_id)
        with trio.move_on_after(2.0):
            while not registered:
                await trio.sleep(0.02)
        await trio.sleep(0.5)
        assert registered and b.peer_id not in registered
        assert a.host.get_network().get_connections(b.peer_id) == before
        assert [c.muxed_conn.is_closed for c in before] == [False]
        assert not b.host.get_network().get_connections(a.peer_id)[0].muxed_conn.is_closed
