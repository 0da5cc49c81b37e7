"""GossipSub topics between real peers on loopback (wire-protocol.md §5)."""

from __future__ import annotations

import trio

from core.events import PeerChange, TopicData
from tests.conftest import connect, peer_group


async def test_three_peers_see_messages_joins_and_leaves() -> None:
    async with peer_group(3) as [(a, ra), (b, rb), (c, rc)]:
        await connect(b, a)
        await connect(c, a)
        await a.subscribe("room")
        a.monitor("room")
        with trio.fail_after(10):
            await b.subscribe("room")
            await c.subscribe("room")
        await ra.wait_for(
            lambda: (
                {e.peer for e in ra.of(PeerChange) if e.joined} >= {str(b.peer_id), str(c.peer_id)}
            )
        )
        assert sorted(a.list_peers("room")) == sorted([str(b.peer_id), str(c.peer_id)])

        await b.publish("room", {"text": "hello from b"})
        for rec in (ra, rc, rb):  # b receives its own publication back, as go does
            await rec.wait_for(lambda rec=rec: rec.of(TopicData))
            assert rec.of(TopicData)[0] == TopicData(
                "room", str(b.peer_id), {"text": "hello from b"}
            )

        await c.unsubscribe("room")
        await ra.wait_for(lambda: PeerChange("room", str(c.peer_id), False) in ra.events)
        assert a.list_peers("room") == [str(b.peer_id)]
        stats = a.topics.stats("room")
        assert stats is not None and stats.messages == 1
        assert set(stats.members) == {str(b.peer_id)}


async def test_subscribe_and_unsubscribe_are_idempotent() -> None:
    async with peer_group(1) as [(a, _)]:
        with trio.fail_after(12):
            await a.subscribe("solo")  # no mesh peer: returns after the 5 s bound
            await a.subscribe("solo")
        assert a.topics.subscribed == ["solo"]
        await a.unsubscribe("solo")
        await a.unsubscribe("solo")
        assert a.topics.subscribed == []


async def test_thousand_publishes_all_delivered_in_order() -> None:
    async with peer_group(2) as [(a, _), (b, rb)]:
        await connect(a, b)
        await a.subscribe("burst")
        await b.subscribe("burst")
        with trio.fail_after(60):
            for i in range(1000):
                await a.publish("burst", i)
        await rb.wait_for(lambda: len(rb.of(TopicData)) >= 1000, timeout=30)
        assert [e.data for e in rb.of(TopicData)] == list(range(1000))


async def test_non_json_payload_is_dropped() -> None:
    async with peer_group(2) as [(a, _), (b, rb)]:
        await connect(a, b)
        await a.subscribe("t")
        await b.subscribe("t")
        await a.pubsub.publish("t", b"\xff not json")
        await a.publish("t", "json")
        await rb.wait_for(lambda: rb.of(TopicData))
        await trio.sleep(0.2)
        assert [e.data for e in rb.of(TopicData)] == ["json"]


async def test_each_message_names_its_own_sender() -> None:
    """Sender ids are remembered per sender: interleaved senders are never mixed up."""
    async with peer_group(3) as [(a, _), (b, rb), (c, _)]:
        await connect(a, b)
        await connect(c, b)
        for peer in (b, a, c):
            with trio.fail_after(10):
                await peer.subscribe("names")
        for i in range(10):
            await a.publish("names", {"from": "a", "n": i})
            await c.publish("names", {"from": "c", "n": i})
        await rb.wait_for(lambda: len(rb.of(TopicData)) >= 20, timeout=20)
        ids = {"a": str(a.peer_id), "c": str(c.peer_id)}
        assert all(e.peer == ids[e.data["from"]] for e in rb.of(TopicData))
        assert sorted((e.data["from"], e.data["n"]) for e in rb.of(TopicData)) == sorted(
            (who, n) for who in "ac" for n in range(10)
        )
