"""core/libp2p_compat/pubsub_sync.py: the ways py-libp2p 0.8.1 leaves a connected peer's
subscriptions unknown, each shown on two bare library hosts (a trap test: when one fails, the
library fixed it and the matching repair can go), then repaired between two Peerdesk peers.
Plus checks that the library internals the repair relies on are still there.

The failures are made deterministic by hand: an outbound pubsub stream reset under a live
connection (what closing one of two connections to a peer does to the stream on it); a peer
that refuses pubsub streams while the connection comes up (a real failed negotiation, on the
bare hosts); and pubsub streams failing with the host's negotiation error while identify
still lists pubsub (as in the swarm), for the repair.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import multiaddr
import pytest
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.host.exceptions import StreamFailure
from libp2p.identity.identify.identify import ID as IDENTIFY
from libp2p.network.exceptions import SwarmException
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import RpcQueue
from libp2p.tools.anyio_service import background_trio_service

from core import libp2p_compat as compat
from core.libp2p_compat import pubsub_sync
from core.network.topics import make_pubsub, make_router
from core.profile import identity
from tests.conftest import connect, peer_group

TOPIC = "t"


# -- the library internals the repair relies on ------------------------------------------------


def test_the_library_internals_used_are_still_there() -> None:
    for name in ("wait_for_peer", "ensure_peer_stream", "is_peer_blacklisted", "stream_handler"):
        assert callable(getattr(Pubsub, name, None)), name
    assert list(inspect.signature(Pubsub.wait_for_peer).parameters) == [
        "self",
        "peer_id",
        "timeout",
    ]
    assert list(inspect.signature(Pubsub.ensure_peer_stream).parameters) == [
        "self",
        "peer_id",
        "timeout",
    ]
    # The library's registration attempt, wrapped on the instance to notice its end, is
    # looked up on the instance by every caller.
    assert list(inspect.signature(Pubsub._handle_new_peer_with_retry).parameters) == [
        "self",
        "peer_id",
        "timeout",
    ]
    assert "run_task(self._handle_new_peer_with_retry, peer_id)" in inspect.getsource(
        Pubsub.handle_peer_queue
    )
    assert "await self._handle_new_peer_with_retry(peer_id, timeout)" in inspect.getsource(
        Pubsub.ensure_peer_stream
    )
    assert "priority" in inspect.signature(RpcQueue.push).parameters
    init = inspect.getsource(Pubsub.__init__)
    assert "self.peer_queues = {}" in init and "self.peers = {}" in init
    # The pubsub protocols' handlers are looked up in the host's multiselect table.
    assert "self.host.set_stream_handler(protocol, self.stream_handler)" in init
    assert list(inspect.signature(Pubsub._forget_subscription).parameters) == [
        "self",
        "peer_id",
        "topic",
    ]  # only the refresh test uses it, to make a peer forget
    # A dead writer is reported through the instance's _handle_dead_peer(peer_id), sync.
    assert list(inspect.signature(Pubsub._handle_dead_peer).parameters) == ["self", "peer_id"]
    assert not inspect.iscoroutinefunction(Pubsub._handle_dead_peer)
    for caller in (Pubsub.write_msg, Pubsub.handle_sending_messages):
        assert "self._handle_dead_peer(peer_id)" in inspect.getsource(caller)


def test_the_library_still_has_the_three_causes() -> None:
    new_peer = inspect.getsource(Pubsub._handle_new_peer)
    # 1: the hello is built before the outbound queue is registered.
    assert new_peer.index("self.get_hello_packet()") < new_peer.index("self.peer_queues[peer_id]")
    # 2: only these two errors are retried; a failed negotiation is neither.
    retry = inspect.getsource(Pubsub._handle_new_peer_with_retry)
    assert "except (SwarmException, StreamClosed)" in retry
    assert not issubclass(StreamFailure, SwarmException)
    # 3: a dead writer forgets the peer's topics; a dead reader is not reported at all.
    assert "self._forget_all_subscriptions(peer_id)" in inspect.getsource(Pubsub._handle_dead_peer)
    reader = inspect.getsource(Pubsub.continuously_read_stream)
    assert "except StreamEOF:" in reader
    assert "_handle_dead_peer" not in reader.split("except StreamEOF:")[1].split("except")[0]


# -- the traps on the bare library -------------------------------------------------------------


@asynccontextmanager
async def bare_pair() -> AsyncIterator[tuple[tuple[IHost, Pubsub], tuple[IHost, Pubsub]]]:
    """Two hosts with Peerdesk's pubsub settings and nothing of Peerdesk's repair."""
    async with AsyncExitStack() as stack:
        nodes = []
        for _ in range(2):
            host = compat.build_host(identity.generate())
            router = make_router()
            pubsub = make_pubsub(host, router)
            await stack.enter_async_context(host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]))
            await stack.enter_async_context(background_trio_service(pubsub))
            await stack.enter_async_context(background_trio_service(router))
            await pubsub.wait_until_ready()
            nodes.append((host, pubsub))
        yield nodes[0], nodes[1]


def knows(pubsub: Pubsub, host: IHost) -> bool:
    return host.get_id() in pubsub.peer_topics.get(TOPIC, ())


async def until(condition: Callable[[], bool], bound: float) -> bool:
    with trio.move_on_after(bound):
        while not condition():
            await trio.sleep(0.05)
        return True
    return False


async def restart_writer(pubsub: Pubsub, host: IHost) -> None:
    """Reset our outbound stream to ``host``'s peer, then write on it: the library sees it
    dead, forgets the peer's topics and opens a new stream (the connection lives on)."""
    old = pubsub.peers[host.get_id()]
    await old.reset()
    await pubsub.publish(TOPIC, b"after the reset")
    assert await until(lambda: pubsub.peers.get(host.get_id(), old) is not old, 10)


def refuse_pubsub(host: IHost, pubsub: Pubsub) -> Callable[[], None]:
    """Take the pubsub protocols off ``host``; returns what puts them back."""
    handlers = host.get_mux().handlers
    taken = {p: handlers.pop(p) for p in pubsub.protocols if p in handlers}
    return lambda: handlers.update(taken)


async def test_trap_a_restarted_writer_never_relearns_the_peers_topics() -> None:
    async with bare_pair() as ((ha, pa), (hb, pb)):
        await pa.subscribe(TOPIC)
        await pb.subscribe(TOPIC)
        await ha.connect(info_from_p2p_addr(multiaddr.Multiaddr(f"{hb.get_addrs()[0]}")))
        assert await until(lambda: knows(pa, hb) and knows(pb, ha), 10)
        await restart_writer(pa, hb)
        assert not await until(lambda: knows(pa, hb), 3), "the library now relearns: drop case 3"
        assert hb.get_id() in pa.peers and knows(pb, ha)


async def test_trap_a_failed_negotiation_is_never_retried() -> None:
    async with bare_pair() as ((ha, pa), (hb, pb)):
        await pa.subscribe(TOPIC)
        await pb.subscribe(TOPIC)
        restore = refuse_pubsub(hb, pb)
        await ha.connect(info_from_p2p_addr(multiaddr.Multiaddr(f"{hb.get_addrs()[0]}")))
        assert await until(lambda: knows(pa, hb), 10)  # b's own stream works
        restore()
        assert not await until(lambda: ha.get_id() in pb.peer_topics.get(TOPIC, ()), 3), (
            "the library now retries a failed negotiation: drop case 2"
        )
        assert hb.get_id() not in pa.peers


# -- the repair between Peerdesk peers ---------------------------------------------------------


@pytest.fixture
def quick_repair(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pubsub_sync, "FIRST_WAIT", 1.0)
    monkeypatch.setattr(pubsub_sync, "PATIENCE", 20.0)


async def test_a_restarted_writer_relearns_the_peers_topics(quick_repair: None) -> None:
    async with peer_group(2) as [(a, _), (b, _)]:
        await a.subscribe(TOPIC)
        await b.subscribe(TOPIC)
        await connect(a, b)
        assert await until(lambda: knows(a.pubsub, b.host) and knows(b.pubsub, a.host), 10)
        for _ in range(3):  # each side, and again
            await restart_writer(a.pubsub, b.host)
            assert await until(lambda: knows(a.pubsub, b.host), 10), "a never relearnt b"
            await restart_writer(b.pubsub, a.host)
            assert await until(lambda: knows(b.pubsub, a.host), 10), "b never relearnt a"
        assert knows(a.pubsub, b.host) and knows(b.pubsub, a.host)
        assert a.list_peers(TOPIC) == [str(b.peer_id)]


def fail_pubsub_streams(
    host: IHost, pubsub: Pubsub, *, identify_too: bool = False
) -> Callable[[], None]:
    """``host``'s pubsub streams (and with ``identify_too`` its identify streams) fail as a
    failed negotiation does (``StreamFailure``, the error the host raises then); otherwise
    identify still lists pubsub, as in most of the swarm's failures. Returns what ends the
    failures."""
    original = host.new_stream
    failing = True
    failed = set(pubsub.protocols) | ({IDENTIFY} if identify_too else set())

    async def new_stream(peer: ID, protocols: Sequence[TProtocol]) -> INetStream:
        if failing and set(protocols) & failed:
            raise StreamFailure(f"failed to open a stream to peer {peer} (test)")
        return await original(peer, protocols)

    def stop() -> None:
        nonlocal failing
        failing = False

    host.new_stream = new_stream  # type: ignore[method-assign]
    return stop


async def test_a_failed_negotiation_is_retried_until_both_know(quick_repair: None) -> None:
    async with peer_group(2) as [(a, _), (b, _)]:
        await a.subscribe(TOPIC)
        await b.subscribe(TOPIC)
        stop = fail_pubsub_streams(a.host, a.pubsub)
        await connect(a, b)
        assert await until(lambda: knows(a.pubsub, b.host), 10)  # b's own stream works
        await trio.sleep(1.5)  # past FIRST_WAIT: our first attempt fails too
        stop()
        assert await until(lambda: knows(b.pubsub, a.host), 15), "a never reopened its stream"
        assert b.peer_id in a.pubsub.peers and a.peer_id in b.pubsub.peers


async def both_fail_then_heal(failing_for: float, bound: float, *, identify_too: bool) -> None:
    """Two Peerdesk peers whose pubsub streams (and with ``identify_too`` identify streams)
    fail at both ends for ``failing_for`` seconds after they connect: neither has a stream
    then, and both know each other's topic within ``bound`` seconds after."""
    async with peer_group(2) as [(a, _), (b, _)]:
        await a.subscribe(TOPIC)
        await b.subscribe(TOPIC)
        stops = [
            fail_pubsub_streams(a.host, a.pubsub, identify_too=identify_too),
            fail_pubsub_streams(b.host, b.pubsub, identify_too=identify_too),
        ]
        await connect(a, b)
        await trio.sleep(failing_for)
        assert not a.pubsub.peers and not b.pubsub.peers
        if identify_too:
            for host, other in ((a.host, b.host), (b.host, a.host)):
                store = host.get_peerstore()
                assert not store.supports_protocols(other.get_id(), [str(IDENTIFY)])
        for stop in stops:
            stop()
        assert await until(lambda: knows(a.pubsub, b.host) and knows(b.pubsub, a.host), bound)


async def test_both_sides_failing_still_ends_with_both_knowing(quick_repair: None) -> None:
    await both_fail_then_heal(1.5, 20, identify_too=False)


async def test_a_failed_negotiation_is_repaired_when_the_library_gives_up() -> None:
    """Not ``FIRST_WAIT`` (10 s) later: the library gives up on a failed negotiation at once,
    and the repair starts then (its first attempt fails too here, the next one a second later
    does not)."""
    assert pubsub_sync.FIRST_WAIT >= 10
    await both_fail_then_heal(0.5, 6, identify_too=False)


async def test_both_sides_failing_with_identify_failed_too_still_ends_with_both_knowing(
    quick_repair: None,
) -> None:
    """The swarm's case: the streams of a new connection all fail (identify too, so neither
    side learns that the other speaks pubsub) and no topic is announced either way."""
    await both_fail_then_heal(1.5, 20, identify_too=True)


async def test_a_dead_writer_the_library_cannot_reopen_is_reopened(quick_repair: None) -> None:
    async with peer_group(2) as [(a, _), (b, _)]:
        await a.subscribe(TOPIC)
        await b.subscribe(TOPIC)
        await connect(a, b)
        assert await until(lambda: knows(a.pubsub, b.host) and knows(b.pubsub, a.host), 10)
        stop = fail_pubsub_streams(a.host, a.pubsub)
        old = a.pubsub.peers[b.peer_id]
        await old.reset()
        await a.pubsub.publish(TOPIC, b"after the reset")
        assert await until(lambda: b.peer_id not in a.pubsub.peers, 10)
        await trio.sleep(1.5)  # the library's retry has given up, and our first attempt
        assert b.peer_id not in a.pubsub.peers
        stop()
        assert await until(lambda: b.peer_id in a.pubsub.peers, 15), "a never reopened"
        assert await until(lambda: knows(a.pubsub, b.host) and knows(b.pubsub, a.host), 10)


async def test_a_lost_announcement_heals_within_a_refresh_round(
    quick_repair: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever made b forget a's topic (here b is simply made to), a's next refresh round
    tells it again."""
    monkeypatch.setattr(pubsub_sync, "REFRESH", 1.0)
    async with peer_group(2) as [(a, _), (b, _)]:
        await a.subscribe(TOPIC)
        await b.subscribe(TOPIC)
        await connect(a, b)
        assert await until(lambda: knows(a.pubsub, b.host) and knows(b.pubsub, a.host), 10)
        b.pubsub._forget_subscription(a.peer_id, TOPIC)
        assert not knows(b.pubsub, a.host)
        assert await until(lambda: knows(b.pubsub, a.host), 10), "no refresh came"


async def test_a_peer_without_pubsub_is_left_alone(
    quick_repair: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A plain host (no pubsub, so none in its identify): no attempt of ours, and the repair
    ends within its bound."""
    monkeypatch.setattr(pubsub_sync, "PATIENCE", 3.0)
    plain = compat.build_host(identity.generate())
    async with (
        plain.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]),
        peer_group(1) as [(a, _)],
    ):
        await a.subscribe(TOPIC)
        caplog.set_level("INFO", logger=pubsub_sync.__name__)
        await a.connect(f"{plain.get_addrs()[0]}")
        store = a.host.get_peerstore()
        assert await until(  # identify has answered: the plain host speaks no pubsub
            lambda: bool(store.supports_protocols(plain.get_id(), [str(IDENTIFY)])), 10
        )
        with trio.fail_after(30):
            await pubsub_sync.resync_subscriptions(a.pubsub, plain.get_id())
        assert plain.get_id() not in a.pubsub.peers
        assert not [r for r in caplog.records if "opening one" in r.getMessage()]
