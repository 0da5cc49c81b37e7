"""A dial's DHT lookup never starts lookups of its own (core/libp2p_compat/nat.py): the DHT
dials peers whose addresses the peerstore has forgotten, and each of those dials used to look
its peer up again, recursing until RecursionError ended the whole trio run."""

from __future__ import annotations

import multiaddr
import pytest
import trio
from libp2p.peer.id import ID

from core import libp2p_compat as compat
from core.profile import identity


async def test_lookups_do_not_nest() -> None:
    host = compat.build_host(identity.generate())
    lookups: list[ID] = []

    async def lookup(peer: ID) -> list[multiaddr.Multiaddr]:
        lookups.append(peer)
        # What kad does while looking: dial a DHT peer we know no address of.
        other = ID.from_pubkey(identity.generate().public_key)
        with pytest.raises(Exception):  # noqa: B017  (no address: the swarm refuses)
            await host.get_network().dial_peer(other)
        return []

    compat.dial_circuits(host, transport=None, lookup=lookup)
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        target = ID.from_pubkey(identity.generate().public_key)
        with trio.fail_after(10), pytest.raises(Exception):  # noqa: B017
            await host.get_network().dial_peer(target)
        assert lookups == [target]
        # Once the lookup is over, the next dial looks up again.
        with trio.fail_after(10), pytest.raises(Exception):  # noqa: B017
            await host.get_network().dial_peer(target)
        assert lookups == [target, target]
