"""Peerdesk's peer: pure trio + py-libp2p, with no Qt anywhere, so it runs headless and in tests."""

__version__ = "0.1.0"
