"""The core on a thread of its own, for a front end that runs another event loop (the GUI).

Measured (qt-notes.md): trio in its own thread keeps a Qt window responsive whatever the core
does — hashing a big file, a burst of messages — where guest mode and qtrio stall it.
Work goes in through ``TrioToken.run_sync_soon`` (tens of microseconds, never blocks the caller
on a busy trio loop); results come back as ``concurrent.futures.Future`` so the caller can wrap
them for its own loop; events come out through a plain callback, called on the trio thread.
"""

from __future__ import annotations

import concurrent.futures
import gc
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

log = logging.getLogger(__name__)

T = TypeVar("T")
STOP_BOUND = 8.0


class CoreCall(concurrent.futures.Future[Any]):
    """A future whose ``cancel()`` also cancels the trio task doing the work: True for a call
    not finished yet, which then ends cancelled. A plain future refuses once it runs, and the
    call runs as soon as the trio thread picks it up, so whether a cancel took depended on
    which thread was quicker (CI failed on it)."""

    def __init__(self, runtime: CoreRuntime) -> None:
        super().__init__()
        self._runtime = runtime
        self._scope: trio.CancelScope | None = None
        self._cancel_asked = False

    def cancel(self) -> bool:
        if super().cancel():  # not started yet: it never will
            return True
        if self.done():
            return False
        self._cancel_asked = True  # read by the runner once its scope exists
        scope = self._scope
        if scope is not None:
            self._runtime._soon(scope.cancel)
        return True


class CoreRuntime:
    """Owns the trio thread. ``main`` is the long-running coroutine (a peer's ``run``), started
    with ``task_status``; its started value becomes ``self.value``."""

    def __init__(self, main: Callable[..., Awaitable[None]]) -> None:
        self._main = main
        self.value: Any = None
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._thread_main, name="peerdesk-core", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def submit(self, fn: Callable[..., Awaitable[T]], *args: Any) -> CoreCall:
        """Run ``await fn(*args)`` on the trio thread; safe from any thread."""
        call = CoreCall(self)

        async def runner() -> None:
            if not call.set_running_or_notify_cancel():
                return
            with trio.CancelScope() as scope:
                call._scope = scope
                if call._cancel_asked:  # asked between starting and having a scope
                    scope.cancel()
                try:
                    result = await fn(*args)
                except BaseException as exc:
                    if isinstance(exc, trio.Cancelled):
                        raise
                    call.set_exception(exc)
                    return
                call.set_result(result)
            if scope.cancelled_caught and not call.done():
                call.set_exception(concurrent.futures.CancelledError())

        def spawn() -> None:
            if self._nursery is None:
                call.set_exception(RuntimeError("the core is not running"))
            else:
                self._nursery.start_soon(runner)

        if not self._soon(spawn):
            call.set_exception(RuntimeError("the core is not running"))
        return call

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Run a plain function on the trio thread (e.g. ``peer.monitor``)."""
        return self._soon(fn, *args)

    def _soon(self, fn: Callable[..., Any], *args: Any) -> bool:
        token = self._token
        if token is None:
            return False
        try:
            token.run_sync_soon(fn, *args)
            return True
        except trio.RunFinishedError:
            return False

    def stop(self, timeout: float = STOP_BOUND) -> None:
        """Ask the core to shut down and wait (bounded) for the thread to end."""
        if self._stop is not None:
            self._soon(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("the core did not stop within %g s", timeout)

    def _thread_main(self) -> None:
        try:
            trio.run(self._run)
        except BaseException as exc:  # reported to the GUI rather than lost on a thread
            log.exception("the core stopped with an error")
            self.error = exc
        finally:
            self.ready.set()

    async def _run(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.value = await nursery.start(self._main)
            # Long-lived objects are all built: freeze them so full GC passes (50-65 ms with
            # the GIL held) stop stalling the GUI thread.
            gc.collect()
            gc.freeze()
            self.ready.set()
            await self._stop.wait()
            stopper = getattr(self.value, "stop", None)
            if callable(stopper):
                stopper()
                stopped = getattr(self.value, "stopped", None)
                if stopped is not None:
                    with trio.move_on_after(STOP_BOUND - 1):
                        await stopped.wait()
            nursery.cancel_scope.cancel()
        self._nursery = None
