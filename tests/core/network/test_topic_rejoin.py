"""Leaving and rejoining a topic never cuts a peer off (issue 8), and presence reports the
peers already there. Real py-libp2p peers on loopback, in one process and in separate
``peerdesk serve`` processes."""

from __future__ import annotations

import time
from itertools import count

import trio

from core import libp2p_compat as compat
from core.events import PeerChange, TopicData
from core.peer import Peer
from tests.conftest import Recorder, connect, peer_group

TOPIC = "line"
DELIVERY_BOUND = 2.0
"""The goal is one heartbeat (0.5 s) plus a round trip; the bound leaves room for a loaded
2-core CI machine without admitting the minute-long cut-off this guards against."""

_tokens = count()


async def _delivered(sender: Peer, receiver: Recorder, bound: float = DELIVERY_BOUND) -> float:
    """Publishes a fresh token from ``sender`` and returns how long ``receiver`` took."""
    token = f"t{next(_tokens)}"
    start = time.monotonic()
    assert await sender.publish(TOPIC, token) >= 1
    await receiver.wait_for(lambda: any(e.data == token for e in receiver.of(TopicData)), bound)
    return time.monotonic() - start


async def _both_ways(a: Peer, ra: Recorder, b: Peer, rb: Recorder, c: Peer, rc: Recorder) -> None:
    # A's own messages, to its neighbour and through it; the far end's and the middle's back.
    await _delivered(a, rb)
    await _delivered(a, rc)
    await _delivered(c, ra)
    await _delivered(b, ra)


async def test_rejoin_in_a_line_keeps_messages_flowing_both_ways() -> None:
    """A-B-C, A and C not connected: after each rejoin (0.1 s, 1 s, 3 s later, then three
    times in a row) messages flow both ways at once, also those forwarded through B."""
    async with peer_group(3) as [(a, ra), (b, rb), (c, rc)]:
        await connect(a, b)
        await connect(b, c)
        with trio.fail_after(20):
            for p in (a, b, c):
                await p.subscribe(TOPIC)
        await _both_ways(a, ra, b, rb, c, rc)
        for delay in (0.1, 1.0, 3.0):
            await a.unsubscribe(TOPIC)
            await trio.sleep(delay)
            with trio.fail_after(10):
                await a.subscribe(TOPIC)
            await _both_ways(a, ra, b, rb, c, rc)
        for _ in range(3):
            await a.unsubscribe(TOPIC)
            await trio.sleep(0.1)
            with trio.fail_after(10):
                await a.subscribe(TOPIC)
        await _both_ways(a, ra, b, rb, c, rc)

        # The mesh re-forms once the 10 s unsubscribe backoff (plus slack) is over, not after
        # the 60 s penalty an early GRAFT used to earn.
        with trio.fail_after(25):
            while not (
                b.peer_id in a.router.mesh.get(TOPIC, ()) and a.peer_id in b.router.mesh[TOPIC]
            ):
                await trio.sleep(0.2)


async def test_two_hundred_messages_right_after_a_rejoin_all_arrive() -> None:
    async with peer_group(3) as [(a, ra), (b, _rb), (c, rc)]:
        await connect(a, b)
        await connect(b, c)
        with trio.fail_after(20):
            for p in (a, b, c):
                await p.subscribe(TOPIC)
        await a.unsubscribe(TOPIC)
        await trio.sleep(0.1)
        await a.subscribe(TOPIC)
        with trio.fail_after(30):
            for i in range(200):
                await a.publish(TOPIC, {"from": "a", "i": i})
                await c.publish(TOPIC, {"from": "c", "i": i})

        def got(rec: Recorder, sender: str) -> list[int]:
            return [
                e.data["i"]
                for e in rec.of(TopicData)
                if isinstance(e.data, dict) and e.data.get("from") == sender
            ]

        await rc.wait_for(lambda: len(got(rc, "a")) >= 200, timeout=20)
        await ra.wait_for(lambda: len(got(ra, "c")) >= 200, timeout=20)
        assert sorted(got(rc, "a")) == list(range(200))
        assert sorted(got(ra, "c")) == list(range(200))


async def test_publish_says_how_many_peers_got_it() -> None:
    async with peer_group(3) as [(a, _), (b, rb), (c, rc)]:
        with trio.fail_after(15):
            await a.subscribe("alone")
        assert await a.publish("alone", "nobody hears this") == 0
        await connect(a, b)
        await connect(a, c)
        with trio.fail_after(15):
            await b.subscribe("alone")
            await c.subscribe("alone")
            while len(a.list_peers("alone")) < 2:
                await trio.sleep(0.05)
        assert await a.publish("alone", "two hear this") == 2
        await rb.wait_for(lambda: rb.of(TopicData))
        await rc.wait_for(lambda: rc.of(TopicData))


async def test_late_subscriber_and_rejoiner_get_joins_for_everyone_there() -> None:
    async with peer_group(4) as [(a, ra), (b, _), (c, _), (d, rd)]:
        for p in (b, c, d):
            await connect(a, p)
        with trio.fail_after(20):
            for p in (b, c, d):
                await p.subscribe(TOPIC)
            await a.subscribe(TOPIC)
        others = {str(p.peer_id) for p in (b, c, d)}

        def joined(rec: Recorder) -> set[str]:
            return {e.peer for e in rec.of(PeerChange) if e.topic == TOPIC and e.joined}

        # Peers already there arrive as joins within about a second, and the listing agrees.
        await ra.wait_for(lambda: joined(ra) == others, timeout=2.0)
        assert set(a.list_peers(TOPIC)) == others

        # After leaving and joining again, everyone is reported afresh.
        await a.unsubscribe(TOPIC)
        ra.events.clear()
        await a.subscribe(TOPIC)
        await ra.wait_for(lambda: joined(ra) == others, timeout=2.0)

        # A monitor (without subscribing) reports those already there too.
        with trio.fail_after(20):
            await b.subscribe("watched")
            await c.subscribe("watched")
            while len(compat_topic_peers(a, "watched")) < 2:
                await trio.sleep(0.05)
        a.monitor("watched")
        await ra.wait_for(
            lambda: (
                {e.peer for e in ra.of(PeerChange) if e.topic == "watched" and e.joined}
                == {str(b.peer_id), str(c.peer_id)}
            ),
            timeout=2.0,
        )
        # Every peer's listing agrees with the joins it was told of.
        assert set(d.list_peers(TOPIC)) == joined(rd)


def compat_topic_peers(peer: Peer, topic: str) -> set[object]:
    return compat.topic_peers(peer.pubsub, topic)
