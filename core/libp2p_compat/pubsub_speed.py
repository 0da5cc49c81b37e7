"""Per-message work py-libp2p 0.8.1's pubsub does and go-libp2p-pubsub does not.

Profiles of two peers exchanging small topic messages (benchmarks/bench_messaging.py) put two
thirds of the time of each side in three places that carry no information:

1. **The signed peer record, rebuilt for every RPC sent.** ``env_to_send_in_RPC`` lists the
   host's addresses (``host.get_addrs()``: socket names turned into multiaddrs, interface
   listings, relay and mapped addresses) to compare them with the cached record, twice per
   message (the message, then its IDONTWANT): about 0.6 ms each on Peerdesk's host. Here the
   record is reused for ``RECORD_REFRESH`` seconds, after which the library checks the
   addresses again, so an address change reaches RPCs within that time. A newer record that
   identify or the DHT issued meanwhile (they call the library's function, which replaces
   the peerstore's local record) is sent at once: peers that have it drop a whole RPC
   carrying an older one (below).
2. **The same record, verified again on every RPC received** (an ed25519 check and a
   peerstore update, twice for an RPC with control messages: ``continuously_read_stream`` and
   ``GossipSub.handle_rpc`` both consume it). Bytes that already passed for that peer are
   accepted without a new check for ``records.RECORD_RECHECK`` seconds (the DHT shares what
   passed); anything else goes through the library's check as before.
3. **A whole RPC dropped for a record merely older than one already stored.** The library
   treats a valid record with a lower sequence number like a forged one and ignores the RPC:
   its messages, subscriptions and GRAFTs. A record travels with every RPC while identify
   and the DHT send newer ones by other streams, so the two race; in the loaded swarm lab
   every message of a round was lost this way. A correctly signed, older record of the
   sending peer is now ignored (the stored, newer one stays) and the RPC handled; a record
   that is forged or of another peer still drops it (records.py, which does the same for
   the DHT). go's pubsub does not read the record outside peer exchange at all.

   The DHT attaches the same record to every request and answer (py-libp2p's ``kad_dht``
   modules and our own walks in kad.py): in the 50-member swarm lab, listing the addresses for
   it was a quarter of a DHT server's time. The DHT modules get the reused record too.
4. **IDONTWANT for every message, to every mesh peer**, including the peer the message came
   from and for our own messages. go sends IDONTWANT only for messages of at least
   ``IDONTWANT_THRESHOLD`` bytes (``GossipSubIDontWantMessageThreshold``), only for messages
   it received (``Preprocess``), and never back to their sender. IDONTWANT is advice, so
   sending less of it is always within the protocol.
5. **Our own message's signature, verified** right after ``Pubsub.publish`` made it, in the
   same call (``push_msg`` checks every message it is given). ``OwnSignedPubsub`` skips that
   one check; messages from anyone else are verified as before.
"""

from __future__ import annotations

import contextvars
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from libp2p.abc import IHost
from libp2p.kad_dht import kad_dht as _kad_dht
from libp2p.kad_dht import peer_routing as _kad_peer_routing
from libp2p.kad_dht import provider_store as _kad_provider_store
from libp2p.kad_dht import value_store as _kad_value_store
from libp2p.peer import peerstore as _peerstore
from libp2p.peer.id import ID
from libp2p.pubsub import floodsub as _floodsub
from libp2p.pubsub import gossipsub as _gossipsub
from libp2p.pubsub import pubsub as _pubsub
from libp2p.pubsub import utils as _pubsub_utils
from libp2p.pubsub.gossipsub import (
    PROTOCOL_ID_V12,
    PROTOCOL_ID_V13,
    PROTOCOL_ID_V14,
    PROTOCOL_ID_V20,
)
from libp2p.pubsub.pb import rpc_pb2

from core.libp2p_compat.pubsub import GoLikeGossipSub, GuardedPubsub
from core.libp2p_compat.records import checked_before, only_older, remember_checked

RECORD_REFRESH = 10.0
"""Seconds a signed peer record built for our RPCs is reused before the addresses are checked.
Listing the addresses costs 1-3 ms on the 2-core build box; at 1 s it was still ~4 % of a
swarm peer's CPU under topic traffic. The record is a hint for peer exchange; addresses that
matter sooner travel by identify."""
IDONTWANT_THRESHOLD = 1024
"""go's GossipSubIDontWantMessageThreshold: smaller messages get no IDONTWANT."""

_MODULES = (_pubsub, _gossipsub, _floodsub)
"""The pubsub modules that imported the two record functions by name."""
_DHT_MODULES = (_kad_dht, _kad_peer_routing, _kad_provider_store, _kad_value_store)
"""The DHT modules that imported ``env_to_send_in_RPC`` by name (they consume records with a
function of another signature, left as it is: records.py)."""

LIBRARY_ENV_TO_SEND = _peerstore.env_to_send_in_RPC
LIBRARY_CONSUME_RECORD = _pubsub_utils.maybe_consume_signed_record

_sent: weakref.WeakKeyDictionary[IHost, tuple[float, object, bytes]] = weakref.WeakKeyDictionary()
"""Per host: when the addresses were last checked, the local record then, its bytes."""


def record_to_send(host: IHost) -> tuple[bytes, bool]:
    """``env_to_send_in_RPC`` with the record reused (see the module doc, 1 and 3)."""
    now = time.monotonic()
    local = host.get_peerstore().get_local_record()
    hit = _sent.get(host)
    if hit is not None and hit[1] is local and now - hit[0] < RECORD_REFRESH:
        return hit[2], False
    envelope, fresh = LIBRARY_ENV_TO_SEND(host)
    _sent[host] = (now, host.get_peerstore().get_local_record(), envelope)
    return envelope, fresh


def _consume_record(msg: rpc_pb2.RPC, host: IHost, peer_id: ID) -> bool:
    if not msg.HasField("senderRecord"):
        return True
    record = msg.senderRecord
    if checked_before(host, peer_id, record):
        return True
    if not LIBRARY_CONSUME_RECORD(msg, host, peer_id) and not only_older(record, host, peer_id):
        return False
    remember_checked(host, peer_id, record)
    return True


def reuse_signed_records() -> None:
    """Reuse our signed peer record between RPCs and a peer's unchanged one, in every pubsub
    and DHT of the process from now on (idempotent)."""
    for module in _MODULES:
        module.env_to_send_in_RPC = record_to_send  # type: ignore[attr-defined]
        module.maybe_consume_signed_record = _consume_record  # type: ignore[attr-defined]
    for module in _DHT_MODULES:
        module.env_to_send_in_RPC = record_to_send  # type: ignore[attr-defined]


def signed_records_reused() -> bool:
    return all(
        getattr(m, "env_to_send_in_RPC", None) is record_to_send
        and getattr(m, "maybe_consume_signed_record", None) is _consume_record
        for m in _MODULES
    ) and all(getattr(m, "env_to_send_in_RPC", None) is record_to_send for m in _DHT_MODULES)


# -- IDONTWANT as go sends it --------------------------------------------------------------------

_forwarding: contextvars.ContextVar[tuple[ID, int] | None] = contextvars.ContextVar(
    "peerdesk_forwarding", default=None
)
_IDONTWANT_PROTOCOLS = frozenset(
    {PROTOCOL_ID_V12, PROTOCOL_ID_V13, PROTOCOL_ID_V14, PROTOCOL_ID_V20}
)
"""Meshsub 1.2 and later know IDONTWANT."""


class GoIDontWantGossipSub(GoLikeGossipSub):
    """Peerdesk's router (go-like publishing, see pubsub.py) sending IDONTWANT as go does."""

    async def publish(self, msg_forwarder: ID, pubsub_msg: rpc_pb2.Message) -> None:
        # The library's publish calls _emit_idontwant_for_message with the id only; the
        # forwarder and the size it needs travel in a context variable (same task).
        token = _forwarding.set((msg_forwarder, len(pubsub_msg.data)))
        try:
            await super().publish(msg_forwarder, pubsub_msg)
        finally:
            _forwarding.reset(token)

    async def _emit_idontwant_for_message(self, msg_id: bytes, topic_ids: Iterable[str]) -> None:
        pubsub = self.pubsub
        forwarding = _forwarding.get()
        if pubsub is None or forwarding is None:
            return
        forwarder, size = forwarding
        if size < IDONTWANT_THRESHOLD or forwarder == pubsub.my_id:
            return
        peers: set[ID] = set()
        for topic in topic_ids:
            peers.update(self.mesh.get(topic, ()))
        peers.discard(forwarder)
        for peer in peers:
            if self.peer_protocol.get(peer) in _IDONTWANT_PROTOCOLS:
                await self.emit_idontwant([msg_id], peer)


LIBRARY_EMIT_IDONTWANT: Callable[..., Any] = _gossipsub.GossipSub._emit_idontwant_for_message
"""The library's own, kept so the compat test can check it still sends on every message."""


# -- our own messages, not verified right after we signed them -----------------------------------

_publishing: contextvars.ContextVar[bytes | None] = contextvars.ContextVar(
    "peerdesk_publishing", default=None
)
"""Set in the task running our own publish: our peer id, whose messages it just signed."""
LIBRARY_SIGNATURE_VALIDATOR: Callable[[rpc_pb2.Message], bool] = _pubsub.signature_validator


def _signature_valid(msg: rpc_pb2.Message) -> bool:
    if msg.from_id and msg.from_id == _publishing.get():
        return True  # signed by Pubsub.publish a moment ago, in this very call
    return LIBRARY_SIGNATURE_VALIDATOR(msg)


class OwnSignedPubsub(GuardedPubsub):
    """Peerdesk's pubsub (guarded, see pubsub.py) that does not check the signature it has
    just made on its own message (an ed25519 verification, about a fifth of a publish).
    Every message that comes from elsewhere is checked as before."""

    async def publish(self, topic_id: str | list[str], data: bytes) -> None:
        token = _publishing.set(self.my_id.to_bytes())
        try:
            await super().publish(topic_id, data)
        finally:
            _publishing.reset(token)


def skip_own_signature_checks() -> None:
    """Route pubsub's signature check through ``_signature_valid`` (idempotent); only an
    ``OwnSignedPubsub`` publish makes it skip anything."""
    _pubsub.signature_validator = _signature_valid


def own_signature_checks_skipped() -> bool:
    return getattr(_pubsub, "signature_validator", None) is _signature_valid
