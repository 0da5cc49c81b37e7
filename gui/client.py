"""What the desktop may ask of the peer: the one seam between the window and the core.

In the spirit of rust-libp2p's file-sharing ``Client``: one async method per operation, the
answers immutable snapshots (``core.snapshots``), the core's events the closed union of
``core.events`` delivered by a Qt signal. ``gui.bridge.CoreBridge`` implements it across
threads for the real peer; ``tests/fake_client.py`` implements it in memory, so a pane or
the whole window can be tested without a network. No pane imports trio or a core object:
they get a ``PeerClient`` and a ``ProfileClient``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QObject, Signal, SignalInstance

from core.profile.settings import Settings
from core.snapshots import FileListing, NetworkState


class ClientSignals(QObject):
    """The signals every client carries, all delivered on the GUI thread."""

    event_received = Signal(object)
    """Any core event (a ``core.events`` class)."""
    online = Signal(object)
    """The peer is up: carries its ``PeerIdentity``."""
    failed = Signal(str)
    """The peer could not start or died: a message for the user."""


class NotDelivered(Exception):
    """A direct message the peer could not deliver (the reason is the message)."""


class PeerClient(Protocol):
    """The running peer, as the desktop uses it. Methods fail (raise) when no peer runs."""

    @property
    def event_received(self) -> SignalInstance: ...
    @property
    def online(self) -> SignalInstance: ...
    @property
    def failed(self) -> SignalInstance: ...

    @property
    def running(self) -> bool:
        """A peer exists (started or starting): calls made now reach it."""
        ...

    @property
    def has_files(self) -> bool:
        """The peer has a file store (a profile without a files folder has none)."""
        ...

    def valid_peer_id(self, text: str) -> bool:
        """Whether ``text`` parses as a peer id (checked here, before any dial)."""
        ...

    # -- state and peers ----------------------------------------------------------------------
    async def state(self) -> NetworkState: ...
    async def dial(self, addr: str) -> str:
        """Dial a ``/…/p2p/<id>`` multiaddr; returns the peer id."""
        ...

    async def add_contacts(self, entries: list[str]) -> dict[str, str]:
        """Returns the entries that could not be used, with the reason."""
        ...

    async def remove_contacts(self, entries: list[str]) -> dict[str, str]: ...

    # -- messages -----------------------------------------------------------------------------
    async def start_protocol(self, protocol: str) -> None:
        """Receive direct messages on ``protocol`` too."""
        ...

    async def send(self, peer: str, protocol: str, value: Any) -> str:
        """Deliver a direct message; returns its id. Raises ``NotDelivered``, ``ValueError``
        (a bad peer id or protocol) or ``ConnectionError``."""
        ...

    async def subscribe(self, topic: str) -> None: ...
    async def unsubscribe(self, topic: str) -> None: ...
    async def publish(self, topic: str, value: Any) -> int:
        """Returns how many peers the message went to (0: nobody heard it)."""
        ...

    async def monitor(self, topic: str) -> None: ...
    async def stop_monitor(self, topic: str) -> None: ...

    # -- files --------------------------------------------------------------------------------
    async def list_own_files(self) -> FileListing: ...
    async def list_peer_files(self, peer: str) -> None:
        """Ask a peer for its listing; the answer comes as a ``PeerFiles`` event."""
        ...

    async def store_file(self, tree_path: str, local: Path, op: str) -> None:
        """Import a local file under ``tree_path``; progress events carry ``op``."""
        ...

    def cancel_store(self, op: str) -> None:
        """Stop the import ``op`` (it then fails); nothing if it already ended."""
        ...

    async def mkdir(self, path: str) -> None: ...
    async def remove(self, path: str) -> None: ...
    async def save(self, cid: str, dest: Path, peer: str, op: str) -> int:
        """Fetch if needed and write ``dest``; returns the bytes written. Cancelling the
        awaiting task stops the transfer in the core."""
        ...

    async def get_file(self, cid: str, fallback: str, op: str) -> None:
        """Fetch a CID; a ``GotFile`` event then says what it is (a folder's entries, or a
        file's type and ``size``, its bytes not inline: ``save`` writes them out), progress
        events (bytes so far, the size once the root block is in) carry ``op``. Cancelling the
        awaiting task stops the fetch (a CID nobody has would otherwise wait out its
        timeout)."""
        ...


class ProfileClient(Protocol):
    """The profile on disk: settings and the identity, read and changed by the Settings
    dialog whether or not a peer runs (a new identity takes effect on the next start)."""

    @property
    def folder(self) -> Path: ...
    def load_settings(self) -> Settings: ...
    def save_settings(self, settings: Settings) -> None: ...
    def peer_id(self) -> str: ...
    def export_identity(self) -> str:
        """The key in p2p-webapp's text form: it IS the identity."""
        ...

    def import_identity(self, text: str) -> str:
        """Replace the identity; returns the new peer id. Raises ValueError on a bad key."""
        ...
