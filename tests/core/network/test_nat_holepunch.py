"""core/network/nat/holepunch.py on loopback: a peer we reach only through a relay is dialled
directly at its public addresses, when it reaches us that way (beside DCUtR) and whenever we
dial it. Loopback stands in for a public address here (the module skips private ones)."""

from __future__ import annotations

import multiaddr
import pytest
import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from core import libp2p_compat as compat
from core.network.nat import holepunch
from core.peer import Peer
from tests.conftest import fast_config, peer_group


def _kinds(peer: Peer, other: ID) -> list[str]:
    return sorted(compat.connection_kind(c) for c in peer.host.get_network().get_connections(other))


async def _wait(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.05)


@pytest.fixture(autouse=True)
def loopback_is_public(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(holepunch, "is_private_or_loopback", lambda addr: False)


async def _relayed_pair(relay: Peer, b: Peer, a: Peer) -> None:
    """A reaches B through the relay only: B's circuit address is all A is told."""
    await _wait(lambda: bool(b.relays.circuit_addrs()), 10)
    await a.connect(f"{b.relays.circuit_addrs()[0]}/p2p/{b.peer_id}")
    assert "relayed" in _kinds(a, b.peer_id)


async def test_a_peer_reaching_us_through_a_relay_is_dialled_directly_beside_the_punch() -> None:
    """What the 50-member swarm showed: on a loaded machine the library's DCUtR gives its own
    direct try 2 s, shorter than a handshake there, and the pair stayed relayed until the
    relay cut it. Here its bound is cut to nothing (the loaded machine); B still dials A's
    public address itself, with a whole dial's bound."""
    async with peer_group(1, config=lambda: fast_config(relay_service=True)) as [(relay, _)]:
        relay_addr = relay.listen_addrs()[0]
        async with (
            peer_group(1, config=lambda: fast_config(bootstrap=[relay_addr])) as [(b, _)],
            peer_group(1) as [(a, _)],
        ):
            for peer in (a, b):  # the library's DCUtR runs on its own at both ends
                peer.holepunch.dcutr.dial_timeout = 0.0001
            await _relayed_pair(relay, b, a)
            await _wait(lambda: "direct" in _kinds(b, a.peer_id), 10)
            assert not compat.only_relayed(b.host, a.peer_id)
            assert a.peer_id not in b.holepunch.punched  # dialled, not punched


async def test_dialling_a_peer_we_reach_only_through_a_relay_goes_direct() -> None:
    """``host.connect`` returns the relayed connection and dials nothing; our dial path then
    tries the peer's public addresses (a rendezvous lookup dials relayed peers for this).
    Hole punching cannot get through here, so only the dial can make the direct connection."""
    async with peer_group(1, config=lambda: fast_config(relay_service=True)) as [(relay, _)]:
        relay_addr = relay.listen_addrs()[0]
        async with (
            peer_group(1, config=lambda: fast_config(bootstrap=[relay_addr])) as [(b, _)],
            peer_group(1) as [(a, _)],
        ):
            b.holepunch.relayed_inbound = lambda peer: None  # type: ignore[method-assign]
            for peer in (a, b):  # nor does the library's DCUtR, which runs on its own
                peer.holepunch.dcutr.dial_timeout = 0.0001
            await _relayed_pair(relay, b, a)
            await trio.sleep(0.5)
            assert compat.only_relayed(a.host, b.peer_id)
            addrs = [multiaddr.Multiaddr(x) for x in b.listen_addrs()]
            assert await a.dial(PeerInfo(b.peer_id, addrs))
            await _wait(lambda: "direct" in _kinds(a, b.peer_id), 10)
            assert "relayed" in _kinds(a, b.peer_id)  # the relayed one lives on beside it
