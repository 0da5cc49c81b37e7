"""Fails when py-libp2p changes under core/libp2p_compat/records.py: the library must still
refuse a correctly signed record that is merely older than the stored one, and a DHT server
must still drop the request that carries it; with our check, real hosts answer it."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import multiaddr
import pytest
import trio
import varint
from libp2p.abc import IHost
from libp2p.custom_types import TProtocol
from libp2p.kad_dht import kad_dht, provider_store
from libp2p.kad_dht.common import PROTOCOL_ID
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.kad_dht.pb.kademlia_pb2 import Message
from libp2p.peer import peerstore
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.varint import read_varint_prefixed_bytes_limited

from core import libp2p_compat as compat
from core.libp2p_compat import records
from core.profile import identity


def _envelope(key: object, peer: ID, port: int) -> bytes:
    addr = multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")
    return peerstore.create_signed_peer_record(peer, [addr], key.private_key).marshal_envelope()  # type: ignore[attr-defined]


def test_the_library_still_refuses_an_older_record_and_the_dht_drops_its_request() -> None:
    me = compat.build_host(identity.generate())
    key = identity.generate()
    peer = ID.from_pubkey(key.public_key)
    older, newer = _envelope(key, peer, 4001), _envelope(key, peer, 4002)
    assert records.LIBRARY_KAD_CONSUME(Message(senderRecord=newer), me, peer)
    assert not records.LIBRARY_KAD_CONSUME(Message(senderRecord=older), me, peer)
    handler = inspect.getsource(KadDHT._do_handle_stream)
    assert "if not maybe_consume_signed_record(message, self.host, peer_id):" in handler
    assert "dropping the stream" in handler
    assert "maybe_consume_signed_record(provider_proto, self.host)" in inspect.getsource(
        provider_store
    )
    assert compat.older_records_tolerated()  # importing core.libp2p_compat installs it


def test_an_older_record_is_stale_but_a_forged_or_foreign_one_is_refused() -> None:
    me = compat.build_host(identity.generate())
    key, other = identity.generate(), identity.generate()
    peer, stranger = ID.from_pubkey(key.public_key), ID.from_pubkey(other.public_key)
    older, newer = _envelope(key, peer, 4001), _envelope(key, peer, 4002)
    assert records.consume_dht_record(Message(senderRecord=newer), me, peer)
    assert records.consume_dht_record(Message(senderRecord=older), me, peer)
    stored = me.get_peerstore().get_peer_record(peer)
    assert stored is not None and stored.marshal_envelope() == newer  # the newer one stays
    assert records.consume_dht_record(Message.Peer(id=peer.to_bytes(), signedRecord=older), me)
    assert not records.consume_dht_record(Message(senderRecord=older), me, stranger)
    forged = _envelope(other, peer, 4003)  # says it is peer's, signed by another key
    assert not records.consume_dht_record(Message(senderRecord=forged), me, peer)
    damaged = older[:-1] + bytes([older[-1] ^ 1])
    assert not records.consume_dht_record(Message(senderRecord=damaged), me, peer)
    unknown = _envelope(other, stranger, 4004)
    me2 = compat.build_host(identity.generate())
    assert records.consume_dht_record(Message(senderRecord=unknown), me2, stranger)


@asynccontextmanager
async def _dht_server() -> AsyncIterator[IHost]:
    host = compat.build_host(identity.generate())
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]))
        await stack.enter_async_context(background_trio_service(KadDHT(host, DHTMode.SERVER)))
        yield host


async def _find_node_with(asker: IHost, server: IHost, record: bytes) -> Message | None:
    stream = await asker.new_stream(server.get_id(), [TProtocol(PROTOCOL_ID)])
    request = Message(type=Message.MessageType.FIND_NODE, key=asker.get_id().to_bytes())
    request.senderRecord = record
    body = request.SerializeToString()
    await stream.write(varint.encode(len(body)) + body)
    try:
        with trio.fail_after(10):
            raw = await read_varint_prefixed_bytes_limited(stream, 1 << 20)
    except Exception:
        return None
    response = Message()
    response.ParseFromString(raw)
    return response


async def test_a_dht_server_answers_a_request_with_an_older_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with _dht_server() as server:
        asker = compat.build_host(identity.generate())
        async with asker.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            await asker.connect(info_from_p2p_addr(multiaddr.Multiaddr(str(server.get_addrs()[0]))))
            key = asker.get_private_key()
            me = asker.get_id()
            older = peerstore.create_signed_peer_record(me, asker.get_addrs(), key)
            newer = peerstore.create_signed_peer_record(me, asker.get_addrs(), key)
            assert server.get_peerstore().consume_peer_record(newer, 7200)
            answer = await _find_node_with(asker, server, older.marshal_envelope())
            assert answer is not None and answer.type == Message.MessageType.FIND_NODE
            monkeypatch.setattr(kad_dht, "maybe_consume_signed_record", records.LIBRARY_KAD_CONSUME)
            assert await _find_node_with(asker, server, older.marshal_envelope()) is None


def test_a_record_that_passed_is_not_checked_again_but_other_bytes_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A GET_PROVIDERS answer names ~70 peers with their records; each check is a signature
    check. The same bytes for the same peer pass without one; anything else is checked."""
    checks = 0
    library_consume = records.LIBRARY_KAD_CONSUME

    def counting(msg: object, host: IHost, peer_id: ID | None = None) -> bool:
        nonlocal checks
        checks += 1
        return library_consume(msg, host, peer_id)

    monkeypatch.setattr(records, "LIBRARY_KAD_CONSUME", counting)
    me = compat.build_host(identity.generate())
    key, other = identity.generate(), identity.generate()
    peer, stranger = ID.from_pubkey(key.public_key), ID.from_pubkey(other.public_key)
    record = _envelope(key, peer, 4001)
    named = Message.Peer(id=peer.to_bytes(), signedRecord=record)
    assert records.consume_dht_record(named, me) and checks == 1
    assert records.consume_dht_record(named, me) and checks == 1  # same bytes: not again
    assert records.consume_dht_record(Message(senderRecord=record), me, peer) and checks == 1
    assert not records.consume_dht_record(Message(senderRecord=record), me, stranger)
    assert not records.consume_dht_record(
        Message.Peer(id=stranger.to_bytes(), signedRecord=record), me
    )
    damaged = record[:-1] + bytes([record[-1] ^ 1])
    assert not records.consume_dht_record(
        Message.Peer(id=peer.to_bytes(), signedRecord=damaged), me
    )
    assert checks == 4
    newer = _envelope(key, peer, 4002)
    assert records.consume_dht_record(Message.Peer(id=peer.to_bytes(), signedRecord=newer), me)
    assert records.consume_dht_record(named, me) and checks == 5  # the older one: still known
    other_host = compat.build_host(identity.generate())
    assert records.consume_dht_record(named, other_host) and checks == 6  # per host
    monkeypatch.setattr(records, "RECORD_RECHECK", 0.0)
    assert records.consume_dht_record(named, me) and checks == 7  # checked again when due
