"""The one place where the GUI thread and the core's trio thread meet.

Requests go to the core through ``CoreRuntime.submit`` and come back as asyncio futures for
qasync. Core events go into a queue here; the first one of a burst wakes the GUI thread through
a queued Qt signal, and the GUI thread hands them to the panes a few milliseconds' worth at a
time, returning to the event loop in between — so a burst of a thousand messages is shown
without starving timers and painting (one queued signal per event had the window stall for
hundreds of milliseconds). Nothing else crosses threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal

log = logging.getLogger(__name__)


DRAIN_BUDGET = 0.008
"""Seconds of event handling per turn of the GUI event loop."""


def mesh_peers(peer: Any, topic: str) -> list[str]:
    """GossipSub's mesh for a topic: the peers we forward every message to in full (the
    topic's other peers only get gossip). Call on the core thread: the router changes it."""
    mesh = getattr(getattr(peer, "router", None), "mesh", None) or {}
    return sorted(str(p) for p in mesh.get(topic, ()))


class CoreBridge(QObject):
    event = Signal(object)
    """Any core event (core.events.*), delivered on the GUI thread."""
    _wake = Signal()
    started = Signal(object)
    """The peer is up: carries the Peer (read-only use from the GUI: ids, addresses)."""
    failed = Signal(str)
    """The core could not start or died: a message for the user."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runtime: Any = None
        self.peer: Any = None
        self._queue: deque[Any] = deque()
        self._lock = threading.Lock()
        self._armed = False
        self._wake.connect(self._drain, Qt.ConnectionType.QueuedConnection)

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
            self.event.emit(event)
        QTimer.singleShot(0, self._drain)

    def start(self, make_peer: Callable[[Callable[[Any], None]], Any]) -> None:
        """Start the core thread. ``make_peer(sink)`` builds the peer; it runs on the caller's
        thread but imports py-libp2p lazily, after the window is on screen."""
        from core.runtime import CoreRuntime

        try:
            peer = make_peer(self.post)
        except Exception as exc:
            log.exception("could not create the peer")
            self.failed.emit(str(exc))
            return
        self.peer = peer
        self.runtime = CoreRuntime(peer.run)
        self.runtime.start()
        threading.Thread(target=self._wait_ready, name="core-ready", daemon=True).start()

    def _wait_ready(self) -> None:  # helper thread: the signals queue to the GUI thread
        runtime = self.runtime
        runtime.ready.wait()
        if runtime.error is not None or runtime.value is None:
            self.failed.emit(f"the peer could not start: {runtime.error}")
        else:
            self.started.emit(runtime.value)

    def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> asyncio.Future[Any]:
        """Run ``await fn(*args)`` in the core; await the result in the GUI's loop."""
        if self.runtime is None:
            raise RuntimeError("the core is not running")
        return asyncio.wrap_future(self.runtime.submit(fn, *args))

    def get_file(self, cid: str, fallback: str) -> asyncio.Future[Any]:
        """Fetch a CID in the core. The answer still comes as a GotFile event; cancelling the
        future stops the fetch (a CID nobody has would otherwise wait out its timeout)."""
        return self.call(self.peer.files._get_file, cid, fallback)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Fire-and-forget a plain method of the peer on the core thread."""
        if self.runtime is not None:
            self.runtime.call_soon(fn, *args)

    def stop(self) -> None:
        if self.runtime is not None:
            self.runtime.stop()
            self.runtime = None
