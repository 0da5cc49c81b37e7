"""Signed peer records: a record older than the one already held is stale, not false.

py-libp2p 0.8.1 attaches our signed peer record to every pubsub RPC and DHT message, and
checks the one each peer sends. ``PeerStore.consume_peer_record`` refuses a correctly
signed record whose sequence number is lower than the stored one, and its callers treat
that like a forged record: pubsub ignores the whole RPC (messages, subscriptions, GRAFTs),
a DHT server resets the stream of the request, a DHT answer skips the provider or peer.
But records travel by several streams at once (identify, pubsub, the DHT, a third peer's
answer relaying what it holds), so an older one arriving after a newer one is normal: in
the loaded swarm lab 1117 pubsub RPCs were dropped this way in one run, and every message
of a round was lost at every member.

``tolerate_older_records`` makes the DHT's checks (the pubsub ones are in
pubsub_speed.py, which wraps them anyway) take such a record as stale: the newer one stays
in the peerstore and the message is handled. A record that is forged, damaged or of
another peer is refused as before. go-libp2p's pubsub and DHT never drop a message for a
record's age.
"""

from __future__ import annotations

from typing import Any

from libp2p.abc import IHost
from libp2p.kad_dht import kad_dht as _kad_dht
from libp2p.kad_dht import peer_routing as _peer_routing
from libp2p.kad_dht import provider_store as _provider_store
from libp2p.kad_dht import utils as _kad_utils
from libp2p.kad_dht.pb.kademlia_pb2 import Message
from libp2p.peer.envelope import consume_envelope
from libp2p.peer.id import ID

LIBRARY_KAD_CONSUME = _kad_utils.maybe_consume_signed_record
_KAD_MODULES = (_kad_dht, _peer_routing, _provider_store)
"""The DHT modules that imported the check by name."""


def only_older(data: bytes, host: IHost, peer_id: ID) -> bool:
    """``data`` is ``peer_id``'s own record, correctly signed, and older than the one the
    peerstore holds: stale, not false."""
    try:
        envelope, record = consume_envelope(data, "libp2p-peer-record")
    except Exception:
        return False
    if record.peer_id != peer_id or ID.from_pubkey(envelope.public_key) != peer_id:
        return False
    # The map consume_peer_record compares with (get_peer_record hides a record whose
    # addresses expired, which the comparison still counts).
    stored = getattr(host.get_peerstore(), "peer_record_map", {}).get(peer_id)
    return stored is not None and stored.seq > record.seq


def _kad_consume(msg: Any, host: IHost, peer_id: ID | None = None) -> bool:
    if LIBRARY_KAD_CONSUME(msg, host, peer_id):
        return True
    if isinstance(msg, Message):
        return (
            peer_id is not None
            and msg.HasField("senderRecord")
            and only_older(msg.senderRecord, host, peer_id)
        )
    if not msg.HasField("signedRecord"):
        return False
    try:
        owner = ID(msg.id)
    except Exception:
        return False
    return only_older(msg.signedRecord, host, owner)


def tolerate_older_records() -> None:
    """Install the tolerant check in every DHT module of the process (idempotent)."""
    for module in _KAD_MODULES:
        module.maybe_consume_signed_record = _kad_consume  # type: ignore[attr-defined]


def older_records_tolerated() -> bool:
    return all(
        getattr(m, "maybe_consume_signed_record", None) is _kad_consume for m in _KAD_MODULES
    )
