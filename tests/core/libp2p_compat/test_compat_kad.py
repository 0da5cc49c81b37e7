"""The Kademlia internals core/libp2p_compat/kad.py leans on (py-libp2p 0.8.1): these fail if
the library changes under them, so an upgrade is looked at on purpose."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import multiaddr
import pytest
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.kad_dht import kad_dht, peer_routing, provider_store
from libp2p.kad_dht.common import PROTOCOL_ID
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT, _encode_key
from libp2p.kad_dht.pb.kademlia_pb2 import Message
from libp2p.kad_dht.provider_store import ProviderRecord, ProviderStore
from libp2p.network.stream.net_stream import NetStream
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.peer.peerstore import PeerStore
from libp2p.tools.anyio_service import background_trio_service

from core import libp2p_compat as compat
from core.libp2p_compat import kad
from core.profile import identity


def test_the_store_traps_we_work_round_are_still_there() -> None:
    # The record lifetime is a module constant, and the store caps a key at 20 providers.
    assert provider_store.PROVIDER_RECORD_EXPIRATION_INTERVAL == compat.PROVIDER_TTL
    assert provider_store.PROVIDER_RECORD_REPUBLISH_INTERVAL == compat.REPROVIDE_INTERVAL
    assert "BUCKET_SIZE" in inspect.getsource(ProviderStore.add_provider)
    # find_providers answers from the local store when it has anything, and caches answers.
    source = inspect.getsource(ProviderStore.find_providers)
    assert "local_providers = self.get_providers(key)" in source
    assert "self.add_provider(key, provider)" in source
    # The maintenance loop calls the republish pass and the cleanup on the DHT's store.
    loop = inspect.getsource(KadDHT._run_main_loop)
    assert "self.provider_store._republish_provider_records()" in loop
    assert "self.provider_store.cleanup_expired()" in loop


def test_the_internals_we_call_keep_their_shape() -> None:
    for name in ("providers", "providing_keys", "peer_routing", "host"):
        assert name in inspect.getsource(ProviderStore.__init__)
    assert "self.routing_table = routing_table" in inspect.getsource(peer_routing.PeerRouting)
    params = inspect.signature(peer_routing.PeerRouting._query_peer_for_closest).parameters
    assert list(params) == ["self", "peer", "target_key"]
    assert "add_addrs(" in inspect.getsource(peer_routing.PeerRouting._query_peer_for_closest)
    # An older signed peer record than the one held is refused, and the peer with it.
    consume = inspect.getsource(PeerStore.consume_peer_record)
    assert "self.peer_record_map.get(peer_id)" in consume and "existing.seq > record.seq" in consume
    query = inspect.getsource(peer_routing.PeerRouting._query_peer_for_closest)
    assert "if not maybe_consume_signed_record(response_msg, self.host, peer):" in query
    assert "if not maybe_consume_signed_record(peer_data, self.host):" in query
    providers = inspect.getsource(ProviderStore._get_providers_from_peer_with_closers)
    assert "if not maybe_consume_signed_record(response, self.host, peer_id):" in providers
    # The wire format we speak ourselves.
    assert {f.name for f in Message.DESCRIPTOR.fields} >= {
        "type",
        "key",
        "closerPeers",
        "providerPeers",
        "senderRecord",
    }
    assert {f.name for f in Message.Peer.DESCRIPTOR.fields} >= {"id", "addrs", "signedRecord"}
    assert list(inspect.signature(ProviderRecord).parameters) == ["provider_info", "timestamp"]
    # The stream handler stores and answers through the DHT's provider_store attribute.
    handler = inspect.getsource(kad_dht.KadDHT._do_handle_stream)
    assert "self.provider_store.add_provider(key, provider_info)" in handler
    assert "self.provider_store.get_providers(key)" in handler
    # FIND_NODE answers put the target first when its addresses are known (go does too).
    assert "closest_peers = [target] + [" in handler
    assert "def _encode_key(key: str) -> bytes" in inspect.getsource(_encode_key)


def test_the_library_provide_still_walks_its_own_way_and_we_send_through_it() -> None:
    # provide_network exists because the library's provide finds the closest peers with its
    # own walk (answers dropped on an older signed record, 10 asks at once)...
    provide = inspect.getsource(ProviderStore.provide)
    assert "self.peer_routing.find_closest_peers_network(key)" in provide
    assert peer_routing.ALPHA == 10
    # ...and sends each ADD_PROVIDER through this method, which we call ourselves.
    params = inspect.signature(ProviderStore._send_add_provider).parameters
    assert list(params) == ["self", "peer_id", "key"]
    assert "ADD_PROVIDER" in inspect.getsource(ProviderStore._send_add_provider)
    # Servers reset DHT requests beyond 12 at once: why our walks ask 3 at a time.
    assert "CapacityLimiter(12)" in inspect.getsource(KadDHT.__init__)


def test_a_dht_server_still_resets_requests_past_12_and_ours_takes_64() -> None:
    assert "self._inbound_limiter = trio.CapacityLimiter(12)" in inspect.getsource(KadDHT.__init__)
    handle = inspect.getsource(KadDHT.handle_stream)
    assert "self._inbound_limiter.borrowed_tokens >= self._inbound_limiter.total_tokens" in handle
    assert "await stream.reset()" in handle
    dht = KadDHT(compat.build_host(identity.generate()), DHTMode.SERVER)
    compat.widen_inbound_handlers(dht)
    assert dht._inbound_limiter.total_tokens == compat.INBOUND_HANDLERS == 64


@asynccontextmanager
async def _asker_and_server(kind: type[KadDHT]) -> AsyncIterator[tuple[IHost, KadDHT]]:
    """A real host connected to another that serves the DHT as ``kind``."""
    server = compat.build_host(identity.generate())
    asker = compat.build_host(identity.generate())
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(server.run(listen))
        dht = kind(server, DHTMode.SERVER)
        await stack.enter_async_context(background_trio_service(dht))
        await stack.enter_async_context(asker.run(listen))
        await asker.connect(info_from_p2p_addr(multiaddr.Multiaddr(str(server.get_addrs()[0]))))
        yield asker, dht


async def test_a_dht_server_closes_a_finished_request_where_the_library_resets_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """py-libp2p's server reads the asker's close as an error and resets every stream after
    its answer; ``GoLikeKadDHT`` closes it. Our asker closes after an answer, never resets."""
    resets = 0
    library_reset = NetStream.reset

    async def counting(self: NetStream) -> None:
        nonlocal resets
        resets += 1
        await library_reset(self)

    monkeypatch.setattr(NetStream, "reset", counting)
    for kind, expected in ((KadDHT, 5), (compat.GoLikeKadDHT, 0)):
        resets = 0
        async with _asker_and_server(kind) as (asker, dht):
            server = dht.host
            for _ in range(5):
                with trio.fail_after(10):
                    answer = await kad._ask(
                        asker, server.get_id(), Message.MessageType.FIND_NODE, b"k" * 32
                    )
                assert answer is not None
            with trio.fail_after(5):
                while resets < expected:
                    await trio.sleep(0.05)
            await trio.sleep(0.3)
        assert resets == expected, kind


async def test_a_request_its_caller_gave_up_on_ends_its_stream_at_the_server() -> None:
    """A walk that ended, or an ask past its timeout, cancels the request: its stream must
    not stay open at the server (holding one of its 12 or 64 handler slots for good)."""
    ended: list[str] = []

    async def silent(stream: INetStream) -> None:
        try:
            while await stream.read(1024):
                pass
            ended.append("closed")
        except Exception as exc:
            ended.append(type(exc).__name__)

    async with _asker_and_server(compat.GoLikeKadDHT) as (asker, dht):
        server = dht.host
        server.set_stream_handler(TProtocol(PROTOCOL_ID), silent)
        for _ in range(3):
            with trio.move_on_after(0.2):
                await kad._ask(asker, server.get_id(), Message.MessageType.FIND_NODE, b"k" * 32)
        with trio.fail_after(5):
            while len(ended) < 3:
                await trio.sleep(0.05)


async def test_an_add_provider_reaches_a_library_server_and_its_stream_ends() -> None:
    async with _asker_and_server(KadDHT) as (asker, dht):
        key = _encode_key("some-topic")
        with trio.fail_after(10):
            assert await kad._add_provider(asker, dht.host.get_id(), key)
            while not dht.provider_store.get_providers(key):
                await trio.sleep(0.05)
        assert dht.provider_store.get_providers(key)[0].peer_id == asker.get_id()
