"""A hostile peer floods a topic we are in (issue 10, item 3): a real py-libp2p host, in a
process of its own, writes many thousands of valid signed GossipSub messages as fast as its
stream takes them, while an honest peer publishes a few and sends a direct message.

The victim must stay alive, its memory bounded, every honest message delivered and the honest
direct message answered at once. Before the per-peer budget (``GuardedPubsub``), py-libp2p
started one task per message read, however many were already waiting, and dropped what did
not fit its 32-slot subscription channel, whoever sent it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import trio

from core import libp2p_compat as compat
from core.events import TopicData
from tests.conftest import connect, peer_group
from tests.test_hostile_peers import CHAT, REPO, rss_bytes, stores

MiB = 1024 * 1024
TOPIC = "flooded-room"
FLOOD = 10_000
HONEST = 20

FLOODER = """
import os, sys, time, trio, multiaddr
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.varint import encode_varint_prefixed
from core import libp2p_compat as compat
from core.network.topics import MESHSUB_PROTOCOLS, make_pubsub, make_router
from core.profile import identity

def signed(key, me, topic, n, size):
    body = ('"flood %d ' % n).encode()
    data = body + b"x" * max(0, size - len(body) - 1) + b'"'
    msg = rpc_pb2.Message(data=data, topicIDs=[topic], from_id=me, seqno=os.urandom(8))
    msg.signature = key.private_key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
    msg.key = key.public_key.serialize()
    return msg

async def main(addr, peer, topic, count, size, per_rpc):
    key = identity.generate()
    host = compat.build_host(key)
    me = host.get_id().to_bytes()
    msgs = [signed(key, me, topic, n, size) for n in range(count)]
    frames = [
        encode_varint_prefixed(rpc_pb2.RPC(publish=msgs[i : i + per_rpc]).SerializeToString())
        for i in range(0, count, per_rpc)
    ]
    pubsub = make_pubsub(host, make_router(GossipSub), Pubsub)  # the library's, as a stranger
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        async with background_trio_service(pubsub), background_trio_service(pubsub.router):
            await pubsub.wait_until_ready()
            await pubsub.subscribe(topic)
            victim = ID.from_base58(peer)
            await host.connect(PeerInfo(victim, [multiaddr.Multiaddr(addr)]))
            stream = await host.new_stream(victim, [MESHSUB_PROTOCOLS[0]])
            print("flooding", flush=True)
            start = time.monotonic()
            batch = b""
            for frame in frames:
                batch += frame
                if len(batch) >= 64 * 1024:
                    await stream.write(batch)
                    batch = b""
            if batch:
                await stream.write(batch)
            print("written %d in %.1f s" % (count, time.monotonic() - start), flush=True)
            await trio.sleep(1.0)
    os._exit(0)  # the library's services can take seconds to wind down; we are done

trio.run(main, *sys.argv[1:4], *map(int, sys.argv[4:7]))
"""


async def flood(addr: str, peer: str, count: int, size: int, per_rpc: int) -> str:
    """Runs the flooder to its end (bounded) and returns what it printed."""
    with trio.fail_after(90):
        done = await trio.run_process(
            [sys.executable, "-c", FLOODER, addr, peer, TOPIC, str(count), str(size), str(per_rpc)],
            capture_stdout=True,
            capture_stderr=True,
            cwd=REPO,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done.stdout.decode()


def flood_messages(events: list[object]) -> int:
    return sum(1 for e in events if isinstance(e, TopicData) and str(e.data).startswith("flood "))


@dataclass
class Outcome:
    """What a flood cost the victim, measured while it lasted."""

    peak_rss: int = 0
    """Largest RSS growth of this process (the victim and the honest peer; not the flooder)."""
    peak_in_flight: int = 0
    """Most messages of one remote peer being validated or delivered at once."""
    honest_lost: int = HONEST
    flood_delivered: int = 0
    dm_seconds: float | None = None
    """How long the honest direct message took to be acknowledged (None: not in 10 s)."""
    flooder_said: str = ""


async def flood_victim(folder: Path, count: int, size: int, per_rpc: int) -> Outcome:
    """A victim peer and an honest peer in a topic; a flooder process sends ``count`` signed
    messages of ``size`` bytes, ``per_rpc`` to an RPC; the honest peer publishes ``HONEST``
    messages and one direct message meanwhile."""
    result = Outcome()
    async with peer_group(2, config=stores(folder)) as [(victim, vrec), (honest, _)]:
        victim.start_protocol(CHAT)
        await connect(honest, victim)
        await victim.subscribe(TOPIC)
        await honest.subscribe(TOPIC)
        pubsub = victim.pubsub
        assert isinstance(pubsub, compat.GuardedPubsub)
        before = rss_bytes()

        async def watch() -> None:
            while True:
                result.peak_rss = max(result.peak_rss, rss_bytes() - before)
                for peer in list(victim.pubsub.peers):
                    messages, _ = pubsub.in_flight(peer)
                    result.peak_in_flight = max(result.peak_in_flight, messages)
                await trio.sleep(0.02)

        async def attack() -> None:
            addr, peer = str(victim.listen_addrs()[0]), str(victim.peer_id)
            result.flooder_said = await flood(addr, peer, count, size, per_rpc)

        def honest_got() -> set[str]:
            return {e.data for e in vrec.of(TopicData) if str(e.data).startswith("honest ")}

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            nursery.start_soon(attack)
            await vrec.wait_for(lambda: flood_messages(vrec.events) > 200, 60)
            for n in range(HONEST):
                await honest.publish(TOPIC, f"honest {n}")
                await trio.sleep(0.05)
            started = trio.current_time()
            with trio.move_on_after(10):
                await honest.send(str(victim.peer_id), CHAT, "hello during the flood")
                result.dm_seconds = trio.current_time() - started
            with trio.move_on_after(15):
                await vrec.wait_for(lambda: len(honest_got()) == HONEST, 15)
            result.honest_lost = HONEST - len(honest_got())
            await vrec.wait_for(lambda: result.flooder_said, 90)
            nursery.cancel_scope.cancel()
        result.flood_delivered = flood_messages(vrec.events)
        assert victim.running
        assert victim.pubsub.manager.is_running
    return result


async def test_a_flooding_peer_is_slowed_and_honest_peers_lose_nothing(tmp_path: Path) -> None:
    """10 000 messages of 256 bytes, 500 to an RPC (go merges queued messages into one RPC).

    Without the budget (benchmarks/bench_hostile_memory.py --only flood --flood 10000
    --per-rpc 500, same run, on the loaded 2-core build box): up to 500 of the flooder's
    messages in flight at once (a task each), the honest direct message acked in 1.5 s (0.9 to 7.6 s
    with 20 000), only 580 of the 10 000 flood messages delivered (the full 32-slot channel
    dropped the rest, and would drop an honest one that came at such a moment), RSS +12 MiB;
    with it: 64 in flight, the DM in 0.06 s, all 10 000 delivered, RSS +18 MiB (the test's
    recorder keeps every delivered message). The issue's +133 MiB for 20 000 messages came from
    another setup (not known here) and is not reproduced by this one.

    Bounds: the flooder never has more than the budget in flight, RSS +64 MiB, every honest
    message arrives, the honest direct message is acknowledged within 2 s."""
    with trio.fail_after(100):  # pytest's own timeout is 120 s
        got = await flood_victim(tmp_path, FLOOD, 256, 500)
    assert "written" in got.flooder_said, got.flooder_said
    assert got.peak_in_flight <= compat.GuardedPubsub.peer_budget_messages, got
    assert got.honest_lost == 0, got
    assert got.dm_seconds is not None and got.dm_seconds < 2.0, got
    assert got.peak_rss < 64 * MiB, f"RSS grew {got.peak_rss / MiB:.0f} MiB"


async def test_one_senders_messages_are_delivered_in_the_order_it_sent_them(
    tmp_path: Path,
) -> None:
    """400 messages, 20 to an RPC, from one sender: delivered in the order sent.

    Each message of an RPC gets its own task, and trio runs the tasks of one scheduler batch
    in either order (it reverses a batch at random). Without ``_BudgetedStream`` letting each
    message's task take its first step before starting the next, the 20 messages of an RPC
    come out reversed about every other RPC, so 20 RPCs in order by chance is ~1 in a million.
    """
    count = 400
    async with peer_group(1, config=stores(tmp_path)) as [(victim, vrec)]:
        await victim.subscribe(TOPIC)
        said = await flood(str(victim.listen_addrs()[0]), str(victim.peer_id), count, 64, 20)
        assert "written" in said, said
        await vrec.wait_for(lambda: flood_messages(vrec.events) >= count, 30)
    order = [
        int(str(e.data).split()[1]) for e in vrec.of(TopicData) if str(e.data).startswith("flood ")
    ]
    assert order == list(range(count))
