"""The one place where the GUI thread and the core's trio thread meet.

Requests go to the core through ``CoreRuntime.submit`` and come back as asyncio futures for
qasync; core events are emitted as a Qt signal of a QObject that lives in the GUI thread, so Qt
queues them across threads and every slot runs on the GUI thread. Nothing else crosses.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)


class CoreBridge(QObject):
    event = Signal(object)
    """Any core event (core.events.*), delivered on the GUI thread."""
    started = Signal(object)
    """The peer is up: carries the Peer (read-only use from the GUI: ids, addresses)."""
    failed = Signal(str)
    """The core could not start or died: a message for the user."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runtime: Any = None
        self.peer: Any = None

    def start(self, make_peer: Callable[[Callable[[Any], None]], Any]) -> None:
        """Start the core thread. ``make_peer(sink)`` builds the peer; it runs on the caller's
        thread but imports py-libp2p lazily, after the window is on screen."""
        from core.runtime import CoreRuntime

        try:
            peer = make_peer(self.event.emit)
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

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Fire-and-forget a plain method of the peer on the core thread."""
        if self.runtime is not None:
            self.runtime.call_soon(fn, *args)

    def stop(self) -> None:
        if self.runtime is not None:
            self.runtime.stop()
            self.runtime = None
