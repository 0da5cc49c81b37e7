"""Several peers in one process, and what a host refuses."""

from __future__ import annotations

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.network.exceptions import SwarmException
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

from core.events import TopicData
from core.profile import identity
from core.server.manager import PeerInUse, PeerManager, alias_for
from tests.conftest import Recorder, fast_config, peer_group


def test_aliases() -> None:
    assert [alias_for(i) for i in (0, 1, 25, 26, 27)] == [
        "peer-a",
        "peer-b",
        "peer-z",
        "peer-aa",
        "peer-ab",
    ]


async def test_sibling_peers_are_connected_direct_gossip_peers() -> None:
    async with trio.open_nursery() as nursery:
        manager = await nursery.start(PeerManager(fast_config()).run)
        recs = [Recorder(), Recorder(), Recorder()]
        peers = [await manager.create_peer(emit=r) for r in recs]
        assert [p.alias for p in peers] == ["peer-a", "peer-b", "peer-c"]
        for p in peers:
            others = {q.peer_id for q in peers if q is not p}
            assert others <= set(p.host.get_connected_peers())
            assert others == set(p.router.direct_peers)
        with pytest.raises(PeerInUse):
            await manager.create_peer(peers[0].key_pair)
        for p in peers:
            await p.subscribe("siblings")
        # Peers that connect and subscribe at once still learn each other's topics (py-libp2p
        # loses the announcement without core.libp2p_compat.resync_subscriptions).
        with trio.fail_after(5):
            for p in peers:
                while len(p.list_peers("siblings")) < 2:
                    await trio.sleep(0.05)
        await peers[2].publish("siblings", "hello")
        for r in recs[:2]:
            await r.wait_for(lambda r=r: r.of(TopicData))
        await manager.remove_peer(str(peers[2].peer_id))
        assert peers[2].peer_id not in peers[0].router.direct_peers
        assert len(manager.peers) == 2
        await manager.close()
        assert not manager.peers
        nursery.cancel_scope.cancel()


async def test_plaintext_peer_is_refused() -> None:
    async with peer_group(1) as [(peer, _)]:
        kp = identity.generate()
        plain = new_host(key_pair=kp, sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(kp)})
        async with plain.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            with pytest.raises(SwarmException), trio.fail_after(10):
                await plain.connect(info_from_p2p_addr(multiaddr.Multiaddr(peer.listen_addrs()[0])))
            assert plain.get_id() not in peer.host.get_connected_peers()
            await plain.close()
