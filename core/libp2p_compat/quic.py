"""QUIC (``/udp/P/quic-v1``) beside TCP, for peers that can be reached directly.

py-libp2p 0.8.1's ``QUICTransport`` (aioquic underneath, libp2p TLS as QUIC's handshake,
native streams instead of Yamux) connects and carries streams. Passing an explicit transport
list to ``new_host`` keeps TCP as well: with ``enable_quic=True`` the library *replaces* the
TCP transport by QUIC when no QUIC listen address is given at construction
(``libp2p/__init__.py`` ``_build_transports_for_swarm``), and our host is built before it
listens. Hole punching over QUIC is out of reach on this release (nat-notes trap 5).
"""

from __future__ import annotations

from libp2p.crypto.keys import KeyPair
from libp2p.transport.quic.transport import QUICTransport


def quic_transport(key_pair: KeyPair) -> QUICTransport:
    return QUICTransport(key_pair.private_key)
