"""The one place where the GUI thread and the core's trio thread meet.

``CoreBridge`` is the desktop's ``PeerClient`` (gui/client.py) for the real peer: each method
runs its work on the core's thread through ``CoreRuntime.submit`` and comes back as an
asyncio future for qasync; what the core holds is read there and handed back as a frozen
snapshot (core/snapshots.py), never as a live object. Core events go into a queue here; the
first one of a burst wakes the GUI thread through a queued Qt signal, and the GUI thread hands
them to the panes a few milliseconds' worth at a time, returning to the event loop in between
— so a burst of a thousand messages is shown without starving timers and painting (one queued
signal per event had the window stall for hundreds of milliseconds). Nothing else crosses
threads. ``ProfileAccess`` is the ``ProfileClient`` over the profile folder.

This is the only gui module that imports trio or core objects other than events, snapshots
and settings (tests/test_architecture.py holds it to that); py-libp2p is imported lazily, when
the peer is built, so the window is on screen first.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal

from core import snapshots
from core.profile.settings import Settings
from gui.client import ClientSignals, NotDelivered

if TYPE_CHECKING:
    from core.files.filetree import Cancel
    from core.peer import Peer
    from core.profile.folder import Profile
    from core.runtime import CoreRuntime

log = logging.getLogger(__name__)


DRAIN_BUDGET = 0.008
"""Seconds of event handling per turn of the GUI event loop."""
IDENTITY_WAIT = 20.0
"""Seconds the ready thread waits for the started peer's addresses."""


class ProfileAccess:
    """The profile folder: settings, identity, and what a start of the peer needs."""

    def __init__(self, data_dir: Path) -> None:
        from core.profile.folder import Profile

        self.profile: Profile = Profile.open(data_dir)

    @property
    def folder(self) -> Path:
        return self.profile.root

    def load_settings(self) -> Settings:
        return self.profile.load_settings()

    def save_settings(self, settings: Settings) -> None:
        self.profile.save_settings(settings)

    def peer_id(self) -> str:
        from core.profile import identity

        return str(identity.peer_id(self.profile.key_pair()))

    def export_identity(self) -> str:
        from core.profile import identity

        return identity.export_key(self.profile.key_pair())

    def import_identity(self, text: str) -> str:
        from core.profile import identity

        key_pair = identity.import_key(text)  # IdentityError is a ValueError
        self.profile.replace_identity(key_pair)
        return str(identity.peer_id(key_pair))


@dataclass(frozen=True)
class Launch:
    """What starting the profile's peer tells the window."""

    notice: str
    """A note on the listen addresses (e.g. the saved port was taken), or empty."""
    has_bootstrap: bool


class CoreBridge(ClientSignals):
    started = Signal(object)
    """The peer is up: carries the Peer itself, for scripts and tests that drive it from
    outside the desktop (packaging/screenshots.py); the window listens to ``online``."""
    _wake = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runtime: CoreRuntime | None = None
        self.peer: Peer | None = None
        self._queue: deque[Any] = deque()
        self._lock = threading.Lock()
        self._armed = False
        self._cancels: dict[str, Cancel] = {}
        self._wake.connect(self._drain, Qt.ConnectionType.QueuedConnection)

    # -- events -------------------------------------------------------------------------------

    def post(self, event: Any) -> None:
        """The core's event sink: called on the trio thread, never blocks on the GUI."""
        with self._lock:
            self._queue.append(event)
            wake = not self._armed
            self._armed = True
        if wake:
            self._wake.emit()

    def _drain(self) -> None:
        deadline = time.perf_counter() + DRAIN_BUDGET
        while time.perf_counter() < deadline:
            with self._lock:
                if not self._queue:
                    self._armed = False
                    return
                event = self._queue.popleft()
            self.event_received.emit(event)
        QTimer.singleShot(0, self._drain)

    # -- life cycle ---------------------------------------------------------------------------

    def start_profile(
        self, profile: ProfileAccess, settings: Settings, *, no_bootstrap: bool, no_mdns: bool
    ) -> Launch:
        """Build the profile's peer from its settings (importing py-libp2p now, behind the
        visible window) and start it."""
        from core.peer import Peer, PeerConfig

        store = profile.profile
        listen, notice = store.listen_addrs_for_start(settings)
        config = PeerConfig.from_settings(
            settings,
            store.root,
            listen_addrs=listen,
            bootstrap=[] if no_bootstrap else None,
            mdns=not no_mdns,
            relay_service=settings.relay_service,
        )

        def make_peer(sink: Callable[[Any], None]) -> Peer:
            return Peer(
                store.key_pair(),
                config,
                sink,
                contacts=store.load_contacts(),
                save_contacts=store.save_contacts,
            )

        self.start(make_peer)
        return Launch(notice, bool(config.bootstrap))

    def start(self, make_peer: Callable[[Callable[[Any], None]], Peer]) -> None:
        """Start the core thread. ``make_peer(sink)`` builds the peer on the caller's thread."""
        from core.runtime import CoreRuntime

        try:
            peer = make_peer(self.post)
        except Exception as exc:
            log.exception("could not create the peer")
            self.failed.emit(str(exc))
            return
        self.peer = peer
        runtime = CoreRuntime(peer.run)
        self.runtime = runtime
        runtime.start()
        threading.Thread(
            target=self._wait_ready, args=(runtime,), name="core-ready", daemon=True
        ).start()

    def _wait_ready(self, runtime: CoreRuntime) -> None:
        """On a helper thread: the signals queue to the GUI thread, ``online`` first so the
        window has the identity before anyone waiting on ``started`` looks at it."""
        runtime.ready.wait()
        peer = runtime.value
        if runtime.error is not None or peer is None:
            self.failed.emit(f"the peer could not start: {runtime.error}")
            return

        async def identity() -> snapshots.PeerIdentity:
            return snapshots.PeerIdentity(str(peer.peer_id), tuple(peer.listen_addrs()))

        try:
            me = runtime.submit(identity).result(IDENTITY_WAIT)
        except Exception as exc:
            self.failed.emit(f"the peer could not start: {exc}")
            return
        self.online.emit(me)
        self.started.emit(peer)

    def stop(self) -> None:
        if self.runtime is not None:
            self.runtime.stop()
            self.runtime = None

    # -- crossing -----------------------------------------------------------------------------

    def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> asyncio.Future[Any]:
        """Run ``await fn(*args)`` in the core; await the result in the GUI's loop."""
        if self.runtime is None:
            raise RuntimeError("the core is not running")
        return asyncio.wrap_future(self.runtime.submit(fn, *args))

    def _peer(self) -> Peer:
        if self.peer is None or self.runtime is None:
            raise RuntimeError("the core is not running")
        return self.peer

    async def _sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A plain method of the peer, run on the core thread (it reads and changes state
        the core's tasks change too)."""

        async def run() -> Any:
            return fn(*args)

        return await self.call(run)

    # -- PeerClient ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.peer is not None and self.runtime is not None

    @property
    def has_files(self) -> bool:
        return self.running and self._peer().files is not None

    def valid_peer_id(self, text: str) -> bool:
        from core.profile.identity import parse_peer_id

        try:
            parse_peer_id(text)
        except ValueError:
            return False
        return True

    async def state(self) -> snapshots.NetworkState:
        peer = self._peer()

        async def read() -> snapshots.NetworkState:
            topics = peer.topics
            mesh = getattr(getattr(peer, "router", None), "mesh", None) or {}
            monitored = []
            for topic in topics.monitored:
                stats = topics.stats(topic)
                members = None if stats is None else stats.members
                monitored.append(snapshots.topic_stats(topic, members, mesh.get(topic, ())))
            return snapshots.NetworkState(
                snapshots.peer_info(peer.info()),
                tuple(
                    snapshots.TopicMembers(t, tuple(peer.list_peers(t))) for t in topics.subscribed
                ),
                tuple(monitored),
            )

        result: snapshots.NetworkState = await self.call(read)
        return result

    async def dial(self, addr: str) -> str:
        result: str = await self.call(self._peer().connect, addr)
        return result

    async def add_contacts(self, entries: list[str]) -> dict[str, str]:
        result: dict[str, str] = await self._sync(self._peer().add_peers, entries)
        return result

    async def remove_contacts(self, entries: list[str]) -> dict[str, str]:
        result: dict[str, str] = await self._sync(self._peer().remove_peers, entries)
        return result

    async def start_protocol(self, protocol: str) -> None:
        await self._sync(self._peer().start_protocol, protocol)

    async def send(self, peer: str, protocol: str, value: Any) -> str:
        from core.network.direct import DeliveryFailed

        try:
            result: str = await self.call(self._peer().send, peer, protocol, value)
        except DeliveryFailed as exc:
            raise NotDelivered(str(exc) or type(exc).__name__) from exc
        return result

    async def subscribe(self, topic: str) -> None:
        await self.call(self._peer().subscribe, topic)

    async def unsubscribe(self, topic: str) -> None:
        await self.call(self._peer().unsubscribe, topic)

    async def publish(self, topic: str, value: Any) -> int:
        result: int = await self.call(self._peer().publish, topic, value)
        return result

    async def monitor(self, topic: str) -> None:
        await self._sync(self._peer().monitor, topic)

    async def stop_monitor(self, topic: str) -> None:
        await self._sync(self._peer().stop_monitor, topic)

    async def list_own_files(self) -> snapshots.FileListing:
        files = self._peer().require_files()

        async def read() -> snapshots.FileListing:
            entries = await files.tree.entries()
            return snapshots.file_listing(files.tree.root, entries)

        result: snapshots.FileListing = await self.call(read)
        return result

    async def list_peer_files(self, peer: str) -> None:
        await self._sync(self._peer().require_files().list_files, peer)

    async def store_file(self, tree_path: str, local: Path, op: str) -> None:
        from core.files.filetree import Cancel

        files = self._peer().require_files()
        cancel = Cancel()
        self._cancels[op] = cancel

        async def store() -> None:
            import trio

            size = (await trio.Path(local).stat()).st_size
            await files.store_file(tree_path, local, total=size, cancel=cancel, op=op)

        try:
            await self.call(store)
        finally:
            self._cancels.pop(op, None)

    def cancel_store(self, op: str) -> None:
        cancel = self._cancels.get(op)
        if cancel is not None and self.runtime is not None:
            self.runtime.call_soon(cancel.cancel)

    async def mkdir(self, path: str) -> None:
        await self.call(self._peer().require_files().mkdir, path)

    async def remove(self, path: str) -> None:
        await self.call(self._peer().require_files().remove, path)

    async def save(self, cid: str, dest: Path, peer: str, op: str) -> int:
        result: int = await self.call(self._peer().require_files().save, cid, dest, peer, op)
        return result

    async def get_file(self, cid: str, fallback: str, op: str) -> None:
        # Under this call, so that cancelling it (Stop) cancels the fetch.
        # Not inline: the answer says the file's size; saving it streams from its blocks.
        files = self._peer().require_files()

        async def get() -> None:
            await files.answer_get(cid, fallback, op, inline=False)

        await self.call(get)
