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

And every check is a signature check, for the same bytes again and again: each pubsub RPC
and DHT message carries its sender's record, and a GET_PROVIDERS answer carries the record
of every provider and closer peer it names (~70 in a topic of 50: 7-10 ms of CPU to take in
one answer, and a topic lookup takes a dozen). Bytes that already passed for a peer pass
again without a new check for ``RECORD_RECHECK`` seconds (``checked_before``); anything else
goes through the library's check as before. A record that once passed stays acceptable
(valid, or stale once a newer one is stored), so remembering it changes no answer.
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict
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

RECORD_RECHECK = 60.0
"""Seconds a peer's record bytes that passed are taken again without a new signature check."""
RECORDS_KEPT = 4096
"""Peers whose records that passed are remembered, per host (least recently seen dropped)."""
VERSIONS_KEPT = 4
"""Distinct records remembered per peer: DHT servers relay whichever of its records they
hold, so a newer and an older one can arrive in turn."""

_checked: weakref.WeakKeyDictionary[IHost, OrderedDict[ID, dict[bytes, float]]] = (
    weakref.WeakKeyDictionary()
)
"""Per host, per peer: record bytes that passed, and when they were last checked."""


def checked_before(host: IHost, peer: ID, data: bytes) -> bool:
    """``data`` passed as ``peer``'s record within the last ``RECORD_RECHECK`` seconds."""
    seen = _checked.get(host)
    versions = seen.get(peer) if seen is not None else None
    if versions is None or seen is None:
        return False
    at = versions.get(data)
    if at is None or time.monotonic() - at >= RECORD_RECHECK:
        return False
    seen.move_to_end(peer)
    return True


def remember_checked(host: IHost, peer: ID, data: bytes) -> None:
    """``data`` just passed the library's check (or ``only_older``) as ``peer``'s record."""
    seen = _checked.get(host)
    if seen is None:
        seen = _checked[host] = OrderedDict()
    versions = seen.setdefault(peer, {})
    versions.pop(data, None)
    versions[data] = time.monotonic()
    while len(versions) > VERSIONS_KEPT:
        del versions[next(iter(versions))]
    seen.move_to_end(peer)
    while len(seen) > RECORDS_KEPT:
        seen.popitem(last=False)


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


def consume_dht_record(msg: Any, host: IHost, peer_id: ID | None = None) -> bool:
    """The library's check of the record a DHT message (``Message``: its sender's, which
    must be ``peer_id`` when given) or a peer it names (``Message.Peer``) carries, taking
    an older record as stale and skipping the check for bytes that passed before."""
    if isinstance(msg, Message):
        if not msg.HasField("senderRecord"):
            return True
        owner, data = peer_id, msg.senderRecord
    else:
        if not msg.HasField("signedRecord"):
            return True
        try:
            owner = ID(msg.id)
        except Exception:
            return False
        data = msg.signedRecord
    if owner is not None and checked_before(host, owner, data):
        return True
    if not LIBRARY_KAD_CONSUME(msg, host, peer_id):
        if owner is None or not only_older(data, host, owner):
            return False
    if owner is not None:
        remember_checked(host, owner, data)
    return True


def tolerate_older_records() -> None:
    """Install the tolerant check in every DHT module of the process (idempotent)."""
    for module in _KAD_MODULES:
        module.maybe_consume_signed_record = consume_dht_record  # type: ignore[attr-defined]


def older_records_tolerated() -> bool:
    return all(
        getattr(m, "maybe_consume_signed_record", None) is consume_dht_record for m in _KAD_MODULES
    )
