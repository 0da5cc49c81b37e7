"""Peerdesk's desktop front end (PySide6 + qasync) over the trio core."""
