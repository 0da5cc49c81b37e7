"""Kademlia DHT: bootstrap readiness, queued operations and topic rendezvous on loopback."""

from __future__ import annotations

import itertools
import random
from typing import Any

import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.kad_dht.kad_dht import _encode_key
from libp2p.kad_dht.utils import sort_peer_ids_by_distance
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from core import libp2p_compat as compat
from core.events import DhtReady, PeerConnected, TopicData
from core.libp2p_compat import kad
from core.libp2p_compat.kad import MAX_PROVIDERS_PER_KEY, ExpiringProviderStore
from core.network.dht import namespace_cid, rendezvous_namespaces
from core.peer import new_peer
from tests.conftest import Recorder, fast_config

UNKNOWN = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"


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
        told: list[PeerInfo] = []
        with trio.fail_after(10):
            while True:
                told.clear()
                infos = await b.dht.find_topic_peers("chatroom", on_found=told.append)
                found = {str(i.peer_id): i for i in infos}
                if str(a.peer_id) in found:
                    break
                await trio.sleep(0.2)
        assert found[str(a.peer_id)].addrs
        assert str(b.peer_id) not in found
        # Each provider was also handed over as the walk named it, once, dialable.
        assert sorted(str(i.peer_id) for i in told) == sorted(found)
        assert all(i.addrs and "/p2p/" not in str(i.addrs[0]) for i in told)
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

        async def recorded(topic: str, **kwargs: Any) -> list[PeerInfo]:
            found = await look(topic, **kwargs)
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


async def test_a_lookup_that_finds_someone_new_starts_the_pause_over() -> None:
    """The pause between lookups doubles while they find nobody new, and starts over after
    one that does: a growing topic's newcomers are found soon, a settled one is left alone.
    The lookups here are scripted (the network part is tested above); the loop is real."""
    someone, newcomer = (ID.from_pubkey(create_new_key_pair().public_key) for _ in range(2))
    script = [[someone]] * 4 + [[someone, newcomer]] + [[someone, newcomer]] * 3
    at: list[float] = []
    async with trio.open_nursery() as nursery:
        peer = await nursery.start(new_peer(fast_config()).run)

        async def scripted(topic: str, **kwargs: Any) -> list[PeerInfo]:
            at.append(trio.current_time())
            return [PeerInfo(p, []) for p in script[min(len(at), len(script)) - 1]]

        async def no_dial(info: PeerInfo) -> bool:
            return False

        peer.dht.find_topic_peers = scripted  # type: ignore[method-assign]
        peer.dht.dial = no_dial  # type: ignore[method-assign]
        peer.dht.rediscover_first = 0.25
        peer.dht.ready.set()
        peer.dht.discover_topic_peers("room")
        with trio.fail_after(30):
            while len(at) < 7:
                await trio.sleep(0.05)
        gaps = [b - a for a, b in itertools.pairwise(at)]
        # 0.25 (someone was new), 0.5, 1, 2, then 0.25 after the newcomer, 0.5
        assert gaps[3] > 1.5 and gaps[4] < 1.0 and gaps[5] > gaps[4], gaps
        peer.stop()


async def test_peer_without_network_starts_at_once_and_reports_ready() -> None:
    rec = Recorder()
    unreachable = f"/ip4/127.0.0.1/tcp/9/p2p/{UNKNOWN}"
    async with trio.open_nursery() as nursery:
        with trio.fail_after(3):
            peer = await nursery.start(
                new_peer(fast_config(bootstrap=[unreachable, "garbage"]), rec).run
            )
        assert peer.running
        await rec.wait_for(lambda: rec.of(DhtReady), timeout=15)
        assert rec.of(DhtReady)[0].routing_table_size == 0
        # Its DHT server takes as many requests at once as go's would (the library: 12).
        assert peer.dht.kad._inbound_limiter.total_tokens == compat.INBOUND_HANDLERS
        peer.stop()


async def test_find_peer_walks_the_dht_to_a_peer_we_are_not_connected_to() -> None:
    """``a`` and ``b`` know only the bootstrap peer; ``a`` hangs up on ``b`` and forgets its
    addresses, so only the bootstrap peer's answer can tell ``a`` where ``b`` is."""
    async with trio.open_nursery() as nursery:
        boot = await nursery.start(new_peer(fast_config()).run)
        boot_addr = boot.listen_addrs()[0]
        recs = [Recorder(), Recorder()]
        a, b = [
            await nursery.start(
                new_peer(fast_config(bootstrap=[boot_addr], dht_ready_wait=5.0), rec).run
            )
            for rec in recs
        ]
        for rec in recs:
            await rec.wait_for(lambda rec=rec: rec.of(DhtReady))
        if a.host.get_network().get_connections(b.peer_id):
            await a.host.disconnect(b.peer_id)
        a.host.get_peerstore().clear_addrs(b.peer_id)
        a.dht.kad.routing_table.remove_peer(b.peer_id)
        assert not a.host.get_network().get_connections(b.peer_id)
        with trio.fail_after(10):
            info = await a.dht.find_peer(b.peer_id)
        assert info is not None and info.addrs
        assert {str(x) for x in info.addrs} & {x.split("/p2p/")[0] for x in b.listen_addrs()}
        # A peer nobody knows is not found, in bounded time.
        with trio.fail_after(15):
            assert await a.dht.find_peer(ID.from_base58(UNKNOWN)) is None
        for p in (a, b, boot):
            p.stop()


async def test_provider_records_are_refreshed_and_expire_for_a_peer_that_left() -> None:
    """With a 6 s record lifetime and advertisements every 2.5 s (py-libp2p takes at most
    10 ADD_PROVIDER in 10 s from one peer, and each advertisement is two, one per name): a
    member still in the topic is found long after its first record expired (it
    re-advertised), and one that left stops being found once its last record expired,
    although others keep looking (a lookup must not store what it was told, or askers would
    hand the record on)."""
    ttl, reprovide = 6.0, 2.5
    async with trio.open_nursery() as nursery:
        boot = await nursery.start(new_peer(fast_config()).run)
        boot.dht.set_record_times(ttl, reprovide)
        boot_addr = boot.listen_addrs()[0]
        recs = [Recorder() for _ in range(3)]
        asker, stays, leaves = [
            await nursery.start(
                new_peer(fast_config(bootstrap=[boot_addr], dht_ready_wait=5.0), rec).run
            )
            for rec in recs
        ]
        for peer, rec in zip((asker, stays, leaves), recs, strict=True):
            peer.dht.set_record_times(ttl, reprovide)
            await rec.wait_for(lambda rec=rec: rec.of(DhtReady))
        stays.dht.advertise_topic("room")
        leaves.dht.advertise_topic("room")
        first_advert = trio.current_time()

        async def found() -> set[ID]:
            return {i.peer_id for i in await asker.dht.find_topic_peers("room")}

        def stored_at_boot() -> set[ID]:
            key = _encode_key(namespace_cid("room"))
            return {i.peer_id for i in boot.dht.providers.get_providers(key)}

        # Found, and stored by another peer (at first a provider answers for itself alone).
        with trio.fail_after(10):
            while {stays.peer_id, leaves.peer_id} - (await found() & stored_at_boot()):
                await trio.sleep(0.2)
        leaves.stop()  # it stops advertising at once (stopping takes seconds)
        assert leaves.peer_id in await found()  # records outlive their peer ...
        with trio.fail_after(ttl * 4 + 10):  # ... until they expire
            while leaves.peer_id in (now := await found()):
                await trio.sleep(0.2)
        assert stays.peer_id in now
        # Long past the first record's lifetime, the member that stayed is still found.
        while trio.current_time() - first_advert < 3 * ttl:
            await trio.sleep(0.5)
        assert await found() == {stays.peer_id}
        for p in (asker, stays, boot):
            p.stop()


def test_provider_store_keeps_more_than_twenty_providers_and_drops_the_oldest_when_full() -> None:
    """py-libp2p refuses the 21st provider of a key; a topic has more members than that."""

    class _Host:
        def get_id(self) -> ID:
            return ID.from_pubkey(create_new_key_pair().public_key)

    store = ExpiringProviderStore(_Host())  # type: ignore[arg-type]
    ids = [
        ID.from_pubkey(create_new_key_pair().public_key) for _ in range(MAX_PROVIDERS_PER_KEY + 1)
    ]
    for peer in ids:
        store.add_provider(b"key", PeerInfo(peer, []))
    kept = {info.peer_id for info in store.get_providers(b"key")}
    assert len(kept) == MAX_PROVIDERS_PER_KEY
    assert ids[0] not in kept and ids[-1] in kept
    store.ttl = 0.0
    assert store.get_providers(b"key") == []


async def test_every_member_record_reaches_every_server_through_our_own_walk() -> None:
    """Members know only the bootstrap peer: an advertisement's ADD_PROVIDERs go to the peers
    its FIND_NODE walk learnt of (all of them are among the 20 closest here), so a lookup from
    any member finds all the others."""
    count = 7
    key = namespace_cid("swarmroom")
    async with trio.open_nursery() as nursery:
        boot = await nursery.start(new_peer(fast_config()).run)
        boot_addr = boot.listen_addrs()[0]
        recs = [Recorder() for _ in range(count)]
        members = [
            await nursery.start(
                new_peer(fast_config(bootstrap=[boot_addr], dht_ready_wait=5.0), rec).run
            )
            for rec in recs
        ]
        for rec in recs:
            await rec.wait_for(lambda rec=rec: rec.of(DhtReady))
        with trio.fail_after(60):
            sent = [await compat.provide_network(m.dht.kad, key) for m in members]
        assert all(n >= 1 for n in sent), sent
        ids = {m.peer_id for m in members}
        held = {i.peer_id for i in boot.dht.providers.get_providers(_encode_key(key))}
        assert len(held & ids) >= count - 1, f"the bootstrap peer holds {len(held)} of {count}"
        for m in members:
            found: set[ID] = set()
            with trio.move_on_after(20):  # a loaded box: the figure that matters is the bench's
                while found - {m.peer_id} != ids - {m.peer_id}:
                    infos = await compat.find_providers_network(m.dht.kad, key)
                    found = {i.peer_id for i in infos}
            assert found - {m.peer_id} == ids - {m.peer_id}, f"{len(found)} of {count} found"
        for p in [*members, boot]:
            p.stop()


async def test_a_provider_lookup_finds_a_record_only_peers_past_the_closest_three_hold() -> None:
    """After churn the closest peers to a key may be ones that joined after its records were
    stored: a record held only by the 6th and 7th closest is still found (a walk that ended
    at the closest three, ``WALK_BETA``, did not find it)."""
    count = 9
    key = namespace_cid("pastthethree")
    raw = _encode_key(key)
    async with trio.open_nursery() as nursery:
        peers = [await nursery.start(new_peer(fast_config()).run) for _ in range(count + 1)]
        asker, provider, servers = peers[0], peers[1], peers[2:]
        for server in servers:
            await asker.connect(server.listen_addrs()[0])
        with trio.fail_after(20):
            while asker.dht.routing_table_size() < len(servers):
                await trio.sleep(0.05)
        by_distance = sort_peer_ids_by_distance(raw, [s.peer_id for s in servers])
        holders = {p for p in by_distance[5:7]}
        for server in servers:
            if server.peer_id in holders:
                server.dht.providers.add_provider(
                    raw, PeerInfo(provider.peer_id, provider.host.get_addrs())
                )
        with trio.fail_after(30):
            found = {i.peer_id for i in await compat.find_providers_network(asker.dht.kad, key)}
        assert provider.peer_id in found
        for p in peers:
            p.stop()


async def test_a_walk_keeps_three_asks_in_flight_retries_once_and_ends_at_the_closest() -> None:
    """The walk's rules on a made-up id space: never more than ``WALK_ALPHA`` asks at once, a
    slow peer holding up only its own slot, a peer that gave no answer asked once more, and
    the walk over once the ``WALK_BETA`` closest known have answered."""
    host = new_host(key_pair=create_new_key_pair())
    ids = [ID.from_pubkey(create_new_key_pair().public_key) for _ in range(30)]
    target = b"some key"
    by_distance = sort_peer_ids_by_distance(target, ids)
    closest, slow, flaky = by_distance[0], by_distance[-1], by_distance[1]
    rng = random.Random(15)
    asked: list[ID] = []
    in_flight = peak = 0

    async def ask(peer: ID) -> list[ID] | None:
        nonlocal in_flight, peak
        asked.append(peer)
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            if peer == slow:
                await trio.sleep(kad.ASK_TIMEOUT + 1)  # cut at ASK_TIMEOUT
            await trio.sleep(0.01)
            if peer == flaky and asked.count(peer) == 1:
                return None
            # Everyone names the four closest (and a few others): the walk learns of them at
            # its first answer, whatever order the asks come back in.
            return [*by_distance[:4], *rng.sample(ids, 3)]
        finally:
            in_flight -= 1

    walk = kad._Walk(host, target, [slow, *rng.sample(by_distance[5:], 4)], set())
    with trio.fail_after(kad.WALK_TIMEOUT + 5):
        await walk.run(ask, lambda: False)
    assert peak <= kad.WALK_ALPHA
    assert asked.count(flaky) == 2 and flaky in walk.answered
    assert set(by_distance[: kad.WALK_BETA]) <= walk.answered
    assert walk.closest()[0] == closest
    # The slow peer is left behind and never answered.
    assert slow not in walk.answered


async def test_a_peer_advertises_again_once_it_has_a_relay_address() -> None:
    """A provider record carries the addresses its sender had, and servers answer with them:
    a NATed peer that advertised before its first reservation was listed without a circuit
    address (nobody can dial its private ones) until the next round, 22 h later. A new
    reservation now advertises the topics again at once."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(new_peer(fast_config()).run)
        server_addr = server.listen_addrs()[0]
        relay = await nursery.start(new_peer(fast_config(relay_service=True)).run)
        config = fast_config(bootstrap=[server_addr], dht_ready_wait=5.0)
        b = await nursery.start(new_peer(config).run)
        a = await nursery.start(new_peer(fast_config(bootstrap=[server_addr])).run)
        await b.subscribe("room")

        async def b_addrs() -> list[str]:
            infos = await a.dht.find_topic_peers("room")
            return [str(x) for i in infos if i.peer_id == b.peer_id for x in i.addrs]

        with trio.fail_after(10):
            while not await b_addrs():
                await trio.sleep(0.2)
        assert not any("p2p-circuit" in x for x in await b_addrs())
        await b.connect(relay.listen_addrs()[0])  # a relay: B reserves on it
        with trio.fail_after(15):
            while not any("p2p-circuit" in x for x in await b_addrs()):
                await trio.sleep(0.2)
        for p in (a, b, relay, server):
            p.stop()
