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
