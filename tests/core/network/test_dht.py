"""Kademlia DHT: bootstrap readiness, queued operations and topic rendezvous on loopback."""

from __future__ import annotations

import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from core.events import DhtReady, PeerConnected, TopicData
from core.network.dht import namespace_cid, rendezvous_namespaces
from core.peer import new_peer
from tests.conftest import Recorder, fast_config


def test_namespace_key_matches_go_routing_discovery() -> None:
    assert namespace_cid("chatroom") == (
        "bafkreigzbskufesb3w42cyscbmwyfaabhy7vpkeo7cmjcefeu5ma6t4fle"
    )
    assert rendezvous_namespaces("chatroom") == ["chatroom", "floodsub:chatroom"]


async def test_peers_introduced_only_by_a_bootstrap_peer_find_each_other() -> None:
    async with trio.open_nursery() as nursery:
        boot = await nursery.start(new_peer(fast_config()).run)
        boot_addr = boot.listen_addrs()[0]
        recs = [Recorder(), Recorder()]
        a = await nursery.start(
            new_peer(fast_config(bootstrap=[boot_addr], dht_ready_wait=5.0), recs[0]).run
        )
        b = await nursery.start(
            new_peer(fast_config(bootstrap=[boot_addr], dht_ready_wait=5.0), recs[1]).run
        )
        # Subscribing before the DHT is ready queues the rendezvous until it is.
        await a.subscribe("chatroom")
        await recs[0].wait_for(lambda: recs[0].of(DhtReady))
        await recs[1].wait_for(lambda: recs[1].of(DhtReady))
        assert recs[0].of(DhtReady)[0].routing_table_size >= 1
        # The provider record of a is found through the bootstrap peer, with a dialable address.
        with trio.fail_after(10):
            while True:
                found = {str(i.peer_id): i for i in await b.dht.find_topic_peers("chatroom")}
                if str(a.peer_id) in found:
                    break
                await trio.sleep(0.2)
        assert found[str(a.peer_id)].addrs
        assert str(b.peer_id) not in found
        await b.subscribe("chatroom")
        await recs[1].wait_for(
            lambda: any(e.peer == str(a.peer_id) for e in recs[1].of(PeerConnected)), timeout=20
        )
        with trio.fail_after(10):
            while str(a.peer_id) not in b.list_peers("chatroom"):
                await trio.sleep(0.05)
        await b.publish("chatroom", "found you")
        await recs[0].wait_for(lambda: recs[0].of(TopicData))
        assert recs[0].of(TopicData)[0].data == "found you"
        for p in (a, b, boot):
            p.stop()


async def test_a_topic_member_keeps_looking_for_peers_that_advertise_later() -> None:
    """One lookup finds only who advertised before it: a member that joined first looks
    again, and so finds a peer that only advertises afterwards and never looks itself."""
    async with trio.open_nursery() as nursery:
        boot = await nursery.start(new_peer(fast_config()).run)
        boot_addr = boot.listen_addrs()[0]
        recs = [Recorder(), Recorder()]
        early = await nursery.start(
            new_peer(fast_config(bootstrap=[boot_addr], dht_ready_wait=5.0), recs[0]).run
        )
        late = await nursery.start(
            new_peer(fast_config(bootstrap=[boot_addr], dht_ready_wait=5.0), recs[1]).run
        )
        lookups: list[set[ID]] = []
        look = early.dht.find_topic_peers

        async def recorded(topic: str) -> list[PeerInfo]:
            found = await look(topic)
            lookups.append({info.peer_id for info in found})
            return found

        early.dht.find_topic_peers = recorded  # type: ignore[method-assign]
        early.dht.rediscover_first = 0.5
        await recs[0].wait_for(lambda: recs[0].of(DhtReady))
        await early.subscribe("chatroom")
        with trio.fail_after(10):
            while not lookups:
                await trio.sleep(0.05)
        assert late.peer_id not in lookups[0]  # nobody else advertises yet
        await recs[1].wait_for(lambda: recs[1].of(DhtReady))
        late.dht.advertise_topic("chatroom")  # advertises, never looks for anyone
        with trio.fail_after(20):
            while not any(late.peer_id in found for found in lookups):
                await trio.sleep(0.1)
        assert len(lookups) >= 2
        await early.unsubscribe("chatroom")
        assert "chatroom" not in early.dht._discovering
        for p in (early, late, boot):
            p.stop()


async def test_peer_without_network_starts_at_once_and_reports_ready() -> None:
    rec = Recorder()
    unreachable = "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
    async with trio.open_nursery() as nursery:
        with trio.fail_after(3):
            peer = await nursery.start(
                new_peer(fast_config(bootstrap=[unreachable, "garbage"]), rec).run
            )
        assert peer.running
        await rec.wait_for(lambda: rec.of(DhtReady), timeout=15)
        assert rec.of(DhtReady)[0].routing_table_size == 0
        peer.stop()
