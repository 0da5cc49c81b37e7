"""Bitswap: the message schema we take from py-libp2p 0.8.1, and why we take nothing else.

py-libp2p's own ``BitswapClient`` cannot talk to Helia or boxo (issue 9): it writes answers on
the requester's stream, which go and js peers have already closed for reading (they expect a
new stream from the responder); it sends an empty CID prefix for CIDv0 blocks, which Helia
rejects; its session sleeps a fixed second after a HAVE. Working round all of that inside its
internals would be most of a rewrite, so ``core/ipfs/bitswap.py`` is our own engine over plain
py-libp2p streams. What it still borrows is the generated protobuf class of the bitswap
message (``libp2p/bitswap/pb/bitswap_pb2.py``, the 1.2.0 schema: wantlist 1, blocks 2,
payload 3, blockPresences 4, pendingBytes 5) — one schema, not a second copy of it.
``tests/core/libp2p_compat/test_compat_bitswap.py`` fails if its field numbers or enum values
change.
"""

from __future__ import annotations

from libp2p.bitswap.pb.bitswap_pb2 import Message as BitswapMessage
from libp2p.custom_types import TProtocol

BITSWAP_120 = TProtocol("/ipfs/bitswap/1.2.0")
BITSWAP_110 = TProtocol("/ipfs/bitswap/1.1.0")
BITSWAP_100 = TProtocol("/ipfs/bitswap/1.0.0")
BITSWAP_LEGACY = TProtocol("/ipfs/bitswap")
BITSWAP_PROTOCOLS = (BITSWAP_120, BITSWAP_110, BITSWAP_100, BITSWAP_LEGACY)
"""Newest first, as we offer them when we open a stream."""

WANT_BLOCK = BitswapMessage.Wantlist.Block
WANT_HAVE = BitswapMessage.Wantlist.Have
PRESENCE_HAVE = BitswapMessage.Have
PRESENCE_DONT_HAVE = BitswapMessage.DontHave

__all__ = [
    "BITSWAP_100",
    "BITSWAP_110",
    "BITSWAP_120",
    "BITSWAP_LEGACY",
    "BITSWAP_PROTOCOLS",
    "PRESENCE_DONT_HAVE",
    "PRESENCE_HAVE",
    "WANT_BLOCK",
    "WANT_HAVE",
    "BitswapMessage",
]
