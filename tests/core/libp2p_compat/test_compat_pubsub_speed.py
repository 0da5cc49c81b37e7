"""Fails when py-libp2p's pubsub changes under core/libp2p_compat/pubsub_speed.py.

The library must still have the per-message costs the module removes (a signed peer record
built and verified per RPC, IDONTWANT for every message), in the places the module hooks; and
with real hosts, the module must remove them without losing a message or accepting a record
it did not check.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import multiaddr
import pytest
import trio
from libp2p.abc import IHost
from libp2p.kad_dht.kad_dht import KadDHT
from libp2p.peer import peerstore
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from core import libp2p_compat as compat
from core.libp2p_compat import pubsub_speed
from core.network.topics import make_pubsub, make_router
from core.profile import identity

TOPIC = "speed"


def test_the_library_still_builds_and_checks_a_record_per_rpc_where_we_hook() -> None:
    assert "host.get_addrs()" in inspect.getsource(peerstore.env_to_send_in_RPC)
    assert "env_to_send_in_RPC(self.pubsub.host)" in inspect.getsource(GossipSub.publish)
    assert "env_to_send_in_RPC(self.pubsub.host)" in inspect.getsource(
        GossipSub.emit_control_message
    )
    assert "maybe_consume_signed_record(" in inspect.getsource(Pubsub.continuously_read_stream)
    assert "maybe_consume_signed_record(" in inspect.getsource(GossipSub.handle_rpc)
    for module in pubsub_speed._MODULES:  # the names we replace are looked up in these
        assert hasattr(module, "env_to_send_in_RPC"), module
        assert hasattr(module, "maybe_consume_signed_record"), module
    for module in pubsub_speed._DHT_MODULES:
        assert "env_to_send_in_RPC(self.host)" in inspect.getsource(module), module
    assert "env_to_send_in_RPC(self.host)" in inspect.getsource(KadDHT._do_handle_stream)
    assert compat.signed_records_reused()  # importing core.libp2p_compat installs it


def test_the_library_still_sends_idontwant_for_every_message() -> None:
    publish = inspect.getsource(GossipSub.publish)
    assert "await self._emit_idontwant_for_message(msg_id, pubsub_msg.topicIDs)" in publish
    params = list(inspect.signature(pubsub_speed.LIBRARY_EMIT_IDONTWANT).parameters)
    assert params == ["self", "msg_id", "topic_ids"]
    emit = inspect.getsource(pubsub_speed.LIBRARY_EMIT_IDONTWANT)
    assert "len(" not in emit and "msg_forwarder" not in emit  # no threshold, no exclusion
    assert "emit_idontwant" in vars(GossipSub)


@asynccontextmanager
async def _pubsub(router_cls: type[GossipSub]) -> AsyncIterator[tuple[IHost, Pubsub, GossipSub]]:
    host = compat.build_host(identity.generate())
    router = make_router(router_cls)
    pubsub = make_pubsub(host, router)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]))
        await stack.enter_async_context(background_trio_service(pubsub))
        await stack.enter_async_context(background_trio_service(router))
        await pubsub.wait_until_ready()
        yield host, pubsub, router


async def _connect(a: IHost, b: IHost) -> None:
    await a.connect(info_from_p2p_addr(multiaddr.Multiaddr(f"{b.get_addrs()[0]}")))


async def _meshed(routers: list[GossipSub], hosts: list[IHost]) -> None:
    """Every router has every other host in its mesh."""
    with trio.fail_after(20):
        while not all(
            {h.get_id() for h in hosts if h is not hosts[i]} <= set(r.mesh.get(TOPIC, ()))
            for i, r in enumerate(routers)
        ):
            await trio.sleep(0.05)


def _record_idontwant(router: GossipSub) -> list[ID]:
    """The peers ``router`` sends IDONTWANT to (sent for real: the original is called)."""
    sent: list[ID] = []
    original = router.emit_idontwant

    async def emit(msg_ids: list[bytes], to_peer: ID) -> None:
        sent.append(to_peer)
        await original(msg_ids, to_peer)

    router.emit_idontwant = emit  # type: ignore[method-assign]
    return sent


async def _take(sub: Any, count: int) -> list[bytes]:
    got: list[bytes] = []
    with trio.move_on_after(20):
        while len(got) < count:
            got.append((await sub.get()).data)
    return got


async def test_idontwant_only_for_large_received_messages_and_never_to_their_sender() -> None:
    async with (
        _pubsub(compat.GoIDontWantGossipSub) as (ha, pa, ra),
        _pubsub(compat.GoIDontWantGossipSub) as (hb, pb, rb),
        _pubsub(compat.GoIDontWantGossipSub) as (hc, pc, rc),
    ):
        await _connect(ha, hb)
        await _connect(ha, hc)
        await _connect(hb, hc)
        await pa.subscribe(TOPIC)
        sub_b = await pb.subscribe(TOPIC)
        sub_c = await pc.subscribe(TOPIC)
        await _meshed([ra, rb, rc], [ha, hb, hc])
        sent = {h.get_id(): _record_idontwant(r) for h, r in ((ha, ra), (hb, rb), (hc, rc))}
        small = [f"small {i}".encode() for i in range(20)]
        for data in small:
            await pa.publish(TOPIC, data)
        assert await _take(sub_b, 20) == small
        assert await _take(sub_c, 20) == small
        assert not any(sent.values())  # below the 1 KiB threshold: none, as go
        large = b"x" * 2048
        await pa.publish(TOPIC, large)
        assert await _take(sub_b, 1) == [large]
        assert await _take(sub_c, 1) == [large]
        with trio.fail_after(10):
            while not (sent[hb.get_id()] and sent[hc.get_id()]):
                await trio.sleep(0.02)
        assert sent[ha.get_id()] == []  # our own message: no IDONTWANT
        assert sent[hb.get_id()] == [hc.get_id()]  # to the other mesh peer, not the sender
        assert sent[hc.get_id()] == [hb.get_id()]


async def test_the_library_router_answers_each_small_message_with_an_idontwant() -> None:
    """The trap itself: when this fails, the library stopped doing it; drop the override."""
    async with (
        _pubsub(GossipSub) as (ha, pa, ra),
        _pubsub(GossipSub) as (hb, pb, rb),
    ):
        await _connect(ha, hb)
        await pa.subscribe(TOPIC)
        sub_b = await pb.subscribe(TOPIC)
        await _meshed([ra, rb], [ha, hb])
        sent = _record_idontwant(rb)
        await pa.publish(TOPIC, b"tiny")
        assert await _take(sub_b, 1) == [b"tiny"]
        with trio.fail_after(10):
            while not sent:
                await trio.sleep(0.02)
        assert sent == [ha.get_id()]  # back to the peer it came from


async def test_records_are_built_and_checked_once_not_per_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checks: list[ID] = []
    library_consume = pubsub_speed.LIBRARY_CONSUME_RECORD

    def counting_consume(msg: rpc_pb2.RPC, host: IHost, peer_id: ID) -> bool:
        checks.append(peer_id)
        return library_consume(msg, host, peer_id)

    monkeypatch.setattr(pubsub_speed, "LIBRARY_CONSUME_RECORD", counting_consume)
    async with (
        _pubsub(compat.GoIDontWantGossipSub) as (ha, pa, ra),
        _pubsub(compat.GoIDontWantGossipSub) as (hb, pb, rb),
    ):
        await _connect(ha, hb)
        sub_a = await pa.subscribe(TOPIC)  # gets our own messages too: read, as Topics does
        sub_b = await pb.subscribe(TOPIC)
        await _meshed([ra, rb], [ha, hb])
        listings = 0
        original = ha.get_addrs

        def counting_addrs() -> list[multiaddr.Multiaddr]:
            nonlocal listings
            listings += 1
            return original()

        ha.get_addrs = counting_addrs  # type: ignore[method-assign]
        checks.clear()
        messages = [f"m{i}".encode() for i in range(200)]
        got: list[bytes] = []

        async def receive() -> None:
            got.extend(await _take(sub_b, len(messages)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            nursery.start_soon(_take, sub_a, len(messages))
            with trio.fail_after(30):
                for data in messages:
                    await pa.publish(TOPIC, data)
                    if len(pa.peer_queues.get(hb.get_id(), ())) > 16:
                        await trio.sleep(0.01)  # as Topics.publish paces
        assert got == messages
        # The library lists our addresses for every RPC (200+) and checks every one received.
        assert listings <= 30, listings
        assert checks.count(ha.get_id()) <= 5, checks


def _signed_rpc(key: Any, peer_id: ID, port: int) -> rpc_pb2.RPC:
    addr = multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")
    envelope = peerstore.create_signed_peer_record(peer_id, [addr], key.private_key)
    rpc = rpc_pb2.RPC()
    rpc.senderRecord = envelope.marshal_envelope()
    return rpc


def test_a_record_is_skipped_only_when_it_is_the_same_bytes_from_the_same_peer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checks = 0
    library_consume = pubsub_speed.LIBRARY_CONSUME_RECORD

    def counting_consume(msg: rpc_pb2.RPC, host: IHost, peer_id: ID) -> bool:
        nonlocal checks
        checks += 1
        return library_consume(msg, host, peer_id)

    monkeypatch.setattr(pubsub_speed, "LIBRARY_CONSUME_RECORD", counting_consume)
    me = compat.build_host(identity.generate())
    x_key, y_key = identity.generate(), identity.generate()
    x, y = ID.from_pubkey(x_key.public_key), ID.from_pubkey(y_key.public_key)
    rpc = _signed_rpc(x_key, x, 4001)
    assert pubsub_speed._consume_record(rpc, me, x) and checks == 1
    assert pubsub_speed._consume_record(rpc, me, x) and checks == 1  # same bytes: reused
    assert not pubsub_speed._consume_record(rpc, me, y)  # x's record on y's stream
    tampered = rpc_pb2.RPC()
    tampered.senderRecord = rpc.senderRecord[:-1] + bytes([rpc.senderRecord[-1] ^ 1])
    assert not pubsub_speed._consume_record(tampered, me, x)
    newer = _signed_rpc(x_key, x, 4002)
    assert pubsub_speed._consume_record(newer, me, x)
    assert checks == 4  # everything but the repeat went through the library's check
    assert pubsub_speed._consume_record(rpc_pb2.RPC(), me, x)  # no record: nothing to check


def test_our_record_is_rebuilt_after_the_refresh_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = compat.build_host(identity.generate())
    listings = 0
    original = host.get_addrs

    def counting_addrs() -> list[multiaddr.Multiaddr]:
        nonlocal listings
        listings += 1
        return original()

    host.get_addrs = counting_addrs  # type: ignore[method-assign]
    first, _ = pubsub_speed.record_to_send(host)
    again, fresh = pubsub_speed.record_to_send(host)
    assert (again, fresh, listings) == (first, False, 1)
    monkeypatch.setattr(pubsub_speed, "RECORD_REFRESH", 0.0)
    pubsub_speed.record_to_send(host)
    assert listings == 2


def test_the_library_still_verifies_our_own_message_in_the_publishing_call() -> None:
    assert "await self.push_msg(self.my_id, msg)" in inspect.getsource(Pubsub.publish)
    assert "if not signature_validator(msg):" in inspect.getsource(Pubsub.push_msg)
    assert compat.own_signature_checks_skipped()


async def test_only_other_peers_messages_are_verified(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[bytes] = []
    library_check = pubsub_speed.LIBRARY_SIGNATURE_VALIDATOR

    def counting_check(msg: rpc_pb2.Message) -> bool:
        checked.append(msg.from_id)
        return library_check(msg)

    monkeypatch.setattr(pubsub_speed, "LIBRARY_SIGNATURE_VALIDATOR", counting_check)
    async with (
        _pubsub(compat.GoIDontWantGossipSub) as (ha, pa, ra),
        _pubsub(compat.GoIDontWantGossipSub) as (hb, pb, rb),
    ):
        assert isinstance(pa, compat.OwnSignedPubsub)
        await _connect(ha, hb)
        sub_a = await pa.subscribe(TOPIC)
        sub_b = await pb.subscribe(TOPIC)
        await _meshed([ra, rb], [ha, hb])
        checked.clear()
        for i in range(10):
            await pa.publish(TOPIC, f"a{i}".encode())
            await pb.publish(TOPIC, f"b{i}".encode())
        for sub in (sub_a, sub_b):
            assert sorted(await _take(sub, 20)) == sorted(
                f"{who}{i}".encode() for who in "ab" for i in range(10)
            )
        # Each message verified once, by the peer that received it, never by its author.
        a, b = ha.get_id().to_bytes(), hb.get_id().to_bytes()
        assert sorted(checked) == sorted([a] * 10 + [b] * 10)


def test_a_message_not_ours_is_always_verified() -> None:
    me, other = (ID.from_pubkey(identity.generate().public_key).to_bytes() for _ in range(2))
    forged = rpc_pb2.Message(data=b"x", topicIDs=[TOPIC], from_id=other, seqno=b"\x00" * 8)
    forged.signature = b"\x00" * 64
    forged.key = identity.generate().public_key.serialize()
    assert not pubsub_speed._signature_valid(forged)  # outside any publish of ours
    token = pubsub_speed._publishing.set(me)
    try:
        assert not pubsub_speed._signature_valid(forged)  # during our publish: not from us
    finally:
        pubsub_speed._publishing.reset(token)


def test_the_library_still_drops_an_rpc_whose_record_is_only_older() -> None:
    """py-libp2p 0.8.1 refuses a valid record with a lower sequence number (and pubsub then
    ignores the whole RPC); ours takes the RPC and keeps the newer record."""
    me = compat.build_host(identity.generate())
    x_key = identity.generate()
    x = ID.from_pubkey(x_key.public_key)
    older, newer = _signed_rpc(x_key, x, 4001), _signed_rpc(x_key, x, 4002)
    assert pubsub_speed.LIBRARY_CONSUME_RECORD(newer, me, x)
    assert not pubsub_speed.LIBRARY_CONSUME_RECORD(older, me, x)
    assert "existing.seq > record.seq" in inspect.getsource(peerstore.PeerStore.consume_peer_record)
    assert "self.peer_record_map.get(peer_id)" in inspect.getsource(
        peerstore.PeerStore.consume_peer_record
    )
    assert pubsub_speed._consume_record(older, me, x)
    stored = me.get_peerstore().get_peer_record(x)
    assert stored is not None and stored.marshal_envelope() == newer.senderRecord
    y_key = identity.generate()
    y = ID.from_pubkey(y_key.public_key)
    assert not pubsub_speed._consume_record(older, me, y)  # x's old record on y's stream
    pubsub_speed._consume_record(_signed_rpc(y_key, y, 4003), me, y)
    forged = _signed_rpc(y_key, x, 4001)  # claims x, signed by y
    assert not pubsub_speed._consume_record(forged, me, x)


def test_a_record_issued_elsewhere_is_sent_at_once() -> None:
    """Identify and the DHT call the library's own function; when it issues a newer local
    record, our next RPC carries that one, not the cached older one peers would refuse."""
    host = compat.build_host(identity.generate())
    first, _ = pubsub_speed.record_to_send(host)
    newer = peerstore.issue_and_cache_local_record(host)
    assert newer != first
    sent, _ = pubsub_speed.record_to_send(host)
    assert sent == newer
