"""Fails when py-libp2p's pubsub changes under core/libp2p_compat/pubsub.py.

Two kinds of check: the library still has the shapes the subclasses override, and the library
itself still shows the traps (a rejoining peer cut off; one bad RPC ending the service). When
a trap test fails, the library fixed it: drop the matching workaround.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import multiaddr
import trio
from google.protobuf.message import DecodeError
from libp2p.abc import IHost
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.varint import encode_varint_prefixed

from core import libp2p_compat as compat
from core.events import TopicData
from core.network.topics import MESHSUB_PROTOCOLS, make_pubsub, make_router
from core.peer import Peer
from core.profile import identity
from tests.conftest import connect, peer_group


def test_the_overridden_methods_still_have_their_shapes() -> None:
    for name in (
        "_get_peers_to_send",
        "gossip_heartbeat",
        "_get_in_topic_gossipsub_peers_from_minus",
    ):
        assert name in vars(GossipSub), name
    params = list(inspect.signature(GossipSub._get_in_topic_gossipsub_peers_from_minus).parameters)
    assert params == ["self", "topic", "num_to_select", "minus", "backoff_check"]
    params = list(inspect.signature(GossipSub._get_peers_to_send).parameters)
    assert params == ["self", "topic_ids", "msg_forwarder", "origin", "msg_id"]
    # Our own publishes reach the router in the publishing task (the recipients context var).
    assert "await self.push_msg(self.my_id, msg)" in inspect.getsource(Pubsub.publish)
    assert "await self.router.publish(msg_forwarder, msg)" in inspect.getsource(Pubsub.push_msg)
    # Backoffs are stored as whole seconds (the reason for the grafting slack).
    assert "int(time.time())" in inspect.getsource(GossipSub._add_back_off)
    assert "back_off" in inspect.getsource(GossipSub.__init__)
    for name in ("stream_handler", "push_msg", "_handle_dead_peer"):
        assert name in vars(Pubsub), name


def test_library_still_gossips_only_to_peers_out_of_backoff() -> None:
    src = inspect.getsource(GossipSub._handle_topic_heartbeat)
    assert "topic, gossip_count, current_peers, True" in src


def test_library_still_prunes_a_graft_for_a_topic_it_is_not_in() -> None:
    src = inspect.getsource(GossipSub.handle_graft)
    assert "# Respond with PRUNE if not subscribed to the topic" in src


async def _graft_after_leave_backoff(router_cls: type[GossipSub]) -> float:
    """B's GRAFT reaches A just after A left: how long is B then kept from grafting A?"""
    async with (
        bare_pubsub(router_cls, compat.GuardedPubsub) as (ha, pa, _),
        bare_pubsub(router_cls, compat.GuardedPubsub) as (hb, pb, rb),
    ):
        await ha.connect(info_from_p2p_addr(multiaddr.Multiaddr(_addr(hb))))
        await pa.subscribe("t")
        await pb.subscribe("t")
        with trio.fail_after(10):
            while ha.get_id() not in rb.mesh.get("t", ()):
                await trio.sleep(0.05)
        await pa.unsubscribe("t")
        await rb.emit_graft("t", ha.get_id())
        await trio.sleep(0.5)
        return rb.back_off.get("t", {}).get(ha.get_id(), 0) - time.time()


async def test_a_graft_crossing_a_leave_costs_no_minute_long_backoff() -> None:
    assert await _graft_after_leave_backoff(GossipSub) > 30  # the library's 60 s PRUNE
    assert await _graft_after_leave_backoff(compat.GoLikeGossipSub) < 11  # the 10 s unsubscribe


def test_library_still_lets_a_decode_error_escape_the_stream_handler() -> None:
    src = inspect.getsource(Pubsub.stream_handler)
    assert "except (StreamError, ParseError, IncompleteReadError)" in src


@asynccontextmanager
async def bare_pubsub(
    router_cls: type[GossipSub], pubsub_cls: type[Pubsub]
) -> AsyncIterator[tuple[IHost, Pubsub, GossipSub]]:
    """A host running the given router and pubsub classes with Peerdesk's settings."""
    host = compat.build_host(identity.generate())
    router = make_router(router_cls)
    pubsub = make_pubsub(host, router, pubsub_cls)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]))
        await stack.enter_async_context(background_trio_service(pubsub))
        await stack.enter_async_context(background_trio_service(router))
        await pubsub.wait_until_ready()
        yield host, pubsub, router


def _addr(host: IHost) -> str:
    return f"{host.get_addrs()[0]}"


async def _received(sub: object, data: bytes, bound: float) -> bool:
    with trio.move_on_after(bound):
        while True:
            msg = await sub.get()  # type: ignore[attr-defined]
            if msg.data == data:
                return True
    return False


async def _rejoin_then_deliver(router_cls: type[GossipSub], pubsub_cls: type[Pubsub]) -> bool:
    async with (
        bare_pubsub(router_cls, pubsub_cls) as (ha, pa, _),
        bare_pubsub(router_cls, pubsub_cls) as (hb, pb, rb),
    ):
        await ha.connect(info_from_p2p_addr(multiaddr.Multiaddr(_addr(hb))))
        await pa.subscribe("t")
        sub_b = await pb.subscribe("t")
        with trio.fail_after(10):
            while ha.get_id() not in rb.mesh.get("t", ()):
                await trio.sleep(0.05)
        await pa.unsubscribe("t")
        await trio.sleep(0.2)
        await pa.subscribe("t")
        await trio.sleep(1.0)
        await pa.publish("t", b"after rejoin")
        return await _received(sub_b, b"after rejoin", 2.0)


async def test_library_gossipsub_still_cuts_off_a_rejoining_peer() -> None:
    assert not await _rejoin_then_deliver(GossipSub, Pubsub)
    assert await _rejoin_then_deliver(compat.GoLikeGossipSub, compat.GuardedPubsub)


async def _garbage_on_meshsub(attacker: IHost, victim: IHost) -> None:
    await attacker.connect(info_from_p2p_addr(multiaddr.Multiaddr(_addr(victim))))
    stream = await attacker.new_stream(victim.get_id(), [TProtocol(MESHSUB_PROTOCOLS[0])])
    await stream.write(encode_varint_prefixed(b"\xff" * 40))
    await trio.sleep(0.5)


async def test_library_pubsub_still_dies_of_one_non_protobuf_rpc() -> None:
    """The DecodeError escapes the stream handler and ends the victim's whole swarm."""
    crashed = False
    try:
        async with (
            bare_pubsub(GossipSub, Pubsub) as (victim, _, _),
            bare_pubsub(GossipSub, Pubsub) as (attacker, _, _),
        ):
            await _garbage_on_meshsub(attacker, victim)
            await trio.sleep(1.0)
    except BaseExceptionGroup as group:
        crashed = group.subgroup(DecodeError) is not None
    assert crashed


# -- hostile RPCs against a whole Peerdesk peer ----------------------------------------------


def _bad_key_publish(topic: str) -> bytes:
    """A publish from a peer id that embeds no key (a sha256 multihash), with a key field
    that does not decode: the library's signature validator re-raises."""
    msg = rpc_pb2.Message(
        data=b'"x"',
        topicIDs=[topic],
        from_id=b"\x12\x20" + os.urandom(32),
        seqno=os.urandom(8),
        key=b"not a key",
        signature=b"sig",
    )
    return rpc_pb2.RPC(publish=[msg]).SerializeToString()


def _graft_unknown_topic() -> bytes:
    control = rpc_pb2.ControlMessage(graft=[rpc_pb2.ControlGraft(topicID="nobody-is-here")])
    return rpc_pb2.RPC(control=control).SerializeToString()


async def _send_raw(attacker: Peer, victim: Peer, payload: bytes) -> None:
    stream = await attacker.host.new_stream(victim.peer_id, [TProtocol(MESHSUB_PROTOCOLS[0])])
    await stream.write(encode_varint_prefixed(payload))
    await trio.sleep(0.3)


async def test_hostile_rpcs_cost_the_sender_its_stream_not_the_victim_its_pubsub() -> None:
    async with peer_group(3) as [(victim, _), (honest, rh), (attacker, _)]:
        await connect(honest, victim)
        await connect(attacker, victim)
        with trio.fail_after(20):
            await victim.subscribe("room")
            await honest.subscribe("room")
        for payload in (_bad_key_publish("room"), _graft_unknown_topic(), b"\xff" * 40):
            await _send_raw(attacker, victim, payload)
            assert victim.host.get_network().manager.is_running  # type: ignore[attr-defined]
            assert victim.pubsub.manager.is_running
            assert victim.router.manager.is_running
            token = payload[:8].hex()
            with trio.fail_after(5):
                assert await victim.publish("room", token) >= 1
            await rh.wait_for(lambda t=token: any(e.data == t for e in rh.of(TopicData)), 5)
        assert victim.running


# -- the per-peer in-flight budget (a flooding peer) -----------------------------------------


def test_the_read_loop_still_has_the_shapes_the_budget_relies_on() -> None:
    """The budget hands the read loop a wrapped stream, takes each parsed message from the
    loop at ``_is_subscribed_to_msg`` and starts its task itself (its context carries the
    charge), and waits where ``notify_subscriptions`` would drop."""
    from libp2p.tools.anyio_service.trio_manager import TrioManager
    from libp2p.utils.varint import read_varint_prefixed_bytes_limited

    assert "await self.continuously_read_stream(stream)" in inspect.getsource(Pubsub.stream_handler)
    loop = inspect.getsource(Pubsub.continuously_read_stream)
    assert "read_varint_prefixed_bytes_limited(\n                    stream," in loop
    assert "if not self._is_subscribed_to_msg(msg):\n                            continue" in loop
    assert "self.manager.run_task(self.push_msg, peer_id, msg)" in loop
    assert "await reader.read(" in inspect.getsource(read_varint_prefixed_bytes_limited)
    assert "self.notify_subscriptions(msg)" in inspect.getsource(Pubsub.push_msg)
    notify = inspect.getsource(Pubsub.notify_subscriptions)
    assert "send_nowait(publish_message)" in notify and "except trio.WouldBlock" in notify
    assert "self._schedule_task(task)" in inspect.getsource(TrioManager.run_task)
    assert "self._task_nursery.start_soon(" in inspect.getsource(TrioManager._schedule_task)
    assert "_is_subscribed_to_msg" in vars(Pubsub)


async def test_a_task_started_by_the_manager_sees_the_spawners_context() -> None:
    """The charge travels to each message's task in a context variable: true only while
    ``run_task`` starts the task synchronously from the caller (trio copies its context)."""
    import contextvars

    from libp2p.tools.anyio_service import Service

    var: contextvars.ContextVar[str] = contextvars.ContextVar("probe", default="unset")
    seen: list[str] = []

    class Idle(Service):
        async def run(self) -> None:
            await trio.sleep_forever()

    async def probe() -> None:
        seen.append(var.get())

    service = Idle()
    async with background_trio_service(service):
        token = var.set("the spawner's")
        service.manager.run_task(probe)
        var.reset(token)
        with trio.fail_after(5):
            while not seen:
                await trio.sleep(0.01)
    assert seen == ["the spawner's"]


def _signed_rpcs(host: IHost, topic: str, count: int, size: int) -> bytes:
    """``count`` valid signed messages of ``size`` bytes from ``host``, one RPC each."""
    from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX

    key = host.get_private_key()
    me = host.get_id().to_bytes()
    out = b""
    for n in range(count):
        data = b"%d " % n + b"x" * size
        msg = rpc_pb2.Message(data=data, topicIDs=[topic], from_id=me, seqno=os.urandom(8))
        msg.signature = key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
        msg.key = host.get_public_key().serialize()
        out += encode_varint_prefixed(rpc_pb2.RPC(publish=[msg]).SerializeToString())
    return out


FLOOD = 200


async def _flood_a_held_validator(pubsub_cls: type[Pubsub]) -> tuple[bool, int, int]:
    """One peer writes 200 messages of 4 KiB (3 Yamux windows) while our topic validator
    holds every message for 1.5 s: (did the whole flood get read meanwhile, how many of its
    messages did we hold at once, how many reached our subscription in the end)."""
    held = trio.Event()
    holding = most = 0

    async def hold(_: object, __: object) -> bool:
        nonlocal holding, most
        holding += 1
        most = max(most, holding)
        await held.wait()
        holding -= 1
        return True

    async with (
        bare_pubsub(GossipSub, pubsub_cls) as (victim, pv, _),
        bare_pubsub(GossipSub, Pubsub) as (flooder, _, _),
    ):
        pv._validator_semaphore = trio.Semaphore(1000)  # count the messages, not the slots
        pv.set_topic_validator("t", hold, is_async_validator=True)
        sub = await pv.subscribe("t")
        await flooder.connect(info_from_p2p_addr(multiaddr.Multiaddr(_addr(victim))))
        stream = await flooder.new_stream(victim.get_id(), [TProtocol(MESHSUB_PROTOCOLS[0])])
        flood = _signed_rpcs(flooder, "t", FLOOD, 4096)
        got: list[bytes] = []
        read_all = False

        async def deliveries() -> None:
            while True:
                got.append((await sub.get()).data)

        async def write() -> None:
            nonlocal read_all
            await stream.write(flood)
            read_all = not held.is_set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(deliveries)
            nursery.start_soon(write)
            await trio.sleep(1.5)
            held.set()
            with trio.move_on_after(10):
                while len(got) < FLOOD:
                    await trio.sleep(0.05)
            await trio.sleep(0.5)
            nursery.cancel_scope.cancel()
        return read_all, most, len(got)


async def test_library_reads_a_flood_without_end_and_drops_what_its_channel_cannot_take() -> None:
    read_all, most, delivered = await _flood_a_held_validator(Pubsub)
    assert read_all and most == FLOOD  # one task per message, all read while we were busy
    assert delivered < FLOOD  # the 32-slot subscription channel dropped the burst's excess


async def test_the_budget_stops_reading_a_flooder_and_delivers_every_message() -> None:
    read_all, most, delivered = await _flood_a_held_validator(compat.GuardedPubsub)
    assert not read_all  # its stream was not read past the budget: Yamux stalled the writer
    assert most == compat.GuardedPubsub.peer_budget_messages
    assert delivered == FLOOD


# -- duplicates: no task for a message already seen ----------------------------------------------


def test_library_push_msg_only_returns_for_a_seen_message() -> None:
    """Skipping the task of a seen message is sound while the library's ``push_msg`` does
    nothing for one but the blacklist checks and the seen lookup, in that order."""
    src = inspect.getsource(Pubsub.push_msg)
    seen = src.index("if self._is_msg_seen(msg):\n            return")
    assert src.count("await ") >= 1 and src.index("await ") > seen
    assert "scorer" not in src[:seen] and "notify_subscriptions" not in src[:seen]


async def _tasks_for_one_message_sent_twice(pubsub_cls: type[Pubsub]) -> tuple[int, int]:
    """A peer sends the same signed message twice (the second after the first arrived):
    (manager tasks started for them, deliveries)."""
    async with (
        bare_pubsub(GossipSub, pubsub_cls) as (victim, pv, _),
        bare_pubsub(GossipSub, Pubsub) as (sender, _, _),
    ):
        started = 0
        spawn = pv.manager.run_task

        def counting(fn: object, *args: object, **kwargs: object) -> None:
            nonlocal started
            started += getattr(fn, "__name__", "") == "push_msg"
            spawn(fn, *args, **kwargs)  # type: ignore[arg-type]

        pv.manager.run_task = counting  # type: ignore[method-assign]
        sub = await pv.subscribe("t")
        await sender.connect(info_from_p2p_addr(multiaddr.Multiaddr(_addr(victim))))
        stream = await sender.new_stream(victim.get_id(), [TProtocol(MESHSUB_PROTOCOLS[0])])
        rpc = _signed_rpcs(sender, "t", 1, 10)
        await stream.write(rpc)
        assert await _received(sub, b"0 " + b"x" * 10, 10)
        await stream.write(rpc)
        with trio.move_on_after(1.0):
            await sub.get()
            return started, 2
        return started, 1


async def test_library_starts_a_task_for_every_copy_of_a_message() -> None:
    assert await _tasks_for_one_message_sent_twice(Pubsub) == (2, 1)


async def test_a_copy_of_a_message_already_seen_gets_no_task() -> None:
    assert await _tasks_for_one_message_sent_twice(compat.GuardedPubsub) == (1, 1)


# -- the queue held for peers not yet subscribed ------------------------------------------------


def test_library_still_rebuilds_the_pending_queue_on_every_prune() -> None:
    src = inspect.getsource(GossipSub._prune_pending_messages)
    assert "queue[:] = [" in src and "self._pending_messages_ttl" in src
    publish = inspect.getsource(GossipSub.publish)
    assert publish.count("self._prune_pending_messages(peer_id)") == 2
    assert "self._pending_messages[peer_id].append((time.time(), rpc_msg))" in publish


def test_pruning_keeps_what_the_library_keeps() -> None:
    """Same queues, same clock: our prefix cut leaves exactly the library's list."""
    import random

    rng = random.Random(7)
    now = time.time()
    ours, theirs = make_router(compat.GoLikeGossipSub), make_router(GossipSub)
    for router in (ours, theirs):
        router._max_pending_messages_per_peer = 20
        router._pending_messages_ttl = 30.0
    for case in range(200):
        peer = ID(b"peer %d" % (case % 3))
        ages = sorted((rng.uniform(0, 60) for _ in range(rng.randrange(0, 40))), reverse=True)
        queue = [(now - age, rpc_pb2.RPC()) for age in ages]
        ours._pending_messages[peer] = list(queue)
        theirs._pending_messages[peer] = list(queue)
        ours._prune_pending_messages(peer)
        theirs._prune_pending_messages(peer)
        assert ours._pending_messages.get(peer) == theirs._pending_messages.get(peer)
        assert (peer in ours._pending_messages) == (peer in theirs._pending_messages)
