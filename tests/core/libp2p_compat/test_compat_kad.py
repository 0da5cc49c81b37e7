"""The Kademlia internals core/libp2p_compat/kad.py leans on (py-libp2p 0.8.1): these fail if
the library changes under them, so an upgrade is looked at on purpose."""

from __future__ import annotations

import inspect

from libp2p.kad_dht import kad_dht, peer_routing, provider_store
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT, _encode_key
from libp2p.kad_dht.pb.kademlia_pb2 import Message
from libp2p.kad_dht.provider_store import ProviderRecord, ProviderStore
from libp2p.peer.peerstore import PeerStore

from core import libp2p_compat as compat
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
