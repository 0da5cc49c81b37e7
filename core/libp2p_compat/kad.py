"""Kademlia DHT internals: provider look-ups and provider record addresses."""

from __future__ import annotations

from collections.abc import Sequence

import multiaddr
from libp2p.kad_dht.kad_dht import KadDHT, _encode_key
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo


async def find_providers_network(dht: KadDHT, key: str, count: int = 20) -> list[PeerInfo]:
    """``find_providers`` answers from the local store alone whenever it holds any record (our
    own advertisement included), so a peer that advertised first never finds anyone. Ask the
    network too, and merge with what the local store knows of other peers."""
    store = dht.provider_store
    encoded = _encode_key(key)
    local = list(store.get_providers(encoded))

    def _skip_local_once(_key: bytes) -> list[PeerInfo]:
        del store.get_providers  # back to the class method for everybody else
        return []

    # find_providers() consults get_providers() synchronously before its first await.
    store.get_providers = _skip_local_once  # type: ignore[method-assign,assignment]
    try:
        remote = await store.find_providers(encoded, count)
    finally:
        store.__dict__.pop("get_providers", None)
    seen: dict[ID, PeerInfo] = {}
    for info in [*remote, *local]:
        if info.peer_id not in seen:
            seen[info.peer_id] = info
        else:
            seen[info.peer_id].addrs.extend(
                a for a in info.addrs if a not in seen[info.peer_id].addrs
            )
    return list(seen.values())


def strip_p2p(addrs: Sequence[multiaddr.Multiaddr]) -> list[multiaddr.Multiaddr]:
    """Provider records carry ``/p2p/<id>`` appended; dialing wants the transport part."""
    out = []
    for addr in addrs:
        text = str(addr)
        if "/p2p/" in text:
            text = text.split("/p2p/")[0]
        if text:
            out.append(multiaddr.Multiaddr(text))
    return out
