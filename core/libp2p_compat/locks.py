"""Locks on py-libp2p's per-frame path that do not yield when they are free.

A trio ``Lock`` or ``Semaphore`` yields to the scheduler on every acquire, even a free one
(``cancel_shielded_checkpoint``: a full pass of the run loop). py-libp2p 0.8.1 takes such
locks around every read and write of every layer: the TCP socket (``TrioTCPStream``), Yamux
(the connection's stream table and frame writes; a stream's window, its close and its
read/write lock, which takes two more inside), and ``NetStream``'s state check. Under topic
traffic that is ~14 acquisitions and as many scheduler passes per frame (cProfile, 12 peers at
5 msgs/s: 352 000 acquisitions for 25 000 frames), a large part of a swarm peer's CPU.

Here those locks acquire at once when free, as asyncio's do, and wait as trio's when taken:
ownership, FIFO hand-over and cancellation while waiting are trio's own (the lock inside is a
real one), and a task cancelled before it asks still gets ``Cancelled`` at the acquire. Only
the objects listed in ``QUICK`` are changed.

Tasks must still take turns. Socket I/O yields on its own, but a read of data Yamux already
buffered does not touch the socket: with every lock quick, the reader of a flooding peer's
stream ran through its whole buffer at once and our other tasks waited: in
tests/test_hostile_pubsub_flood.py the direct message sent during the flood took 2.0-2.4 s
and missed its 2 s bound (3 runs of 3; with py-libp2p's locks, and with what is here, it
passes: 0.13 / 0.06 s in a run outside pytest). So the semaphore in a Yamux stream's read/write
lock stays trio's: each stream read and write passes through the scheduler once, as a read
from a trio channel does, instead of three to five times.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import trio
from libp2p.io import trio as _io_trio
from libp2p.network.stream import net_stream as _net_stream
from libp2p.stream_muxer import rw_lock as _rw_lock
from libp2p.stream_muxer.yamux import yamux as _yamux


class QuickLock:
    """A trio ``Lock`` or ``Semaphore`` whose acquire does not yield when it is free."""

    __slots__ = ("inner",)

    def __init__(self, inner: trio.Lock | trio.Semaphore) -> None:
        self.inner = inner

    async def acquire(self) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()  # free of cost unless cancelled
        try:
            self.inner.acquire_nowait()
        except trio.WouldBlock:
            await self.inner.acquire()

    def acquire_nowait(self) -> None:
        self.inner.acquire_nowait()

    def release(self) -> None:
        self.inner.release()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.inner.release()


QUICK: dict[type[Any], tuple[str, ...]] = {
    _io_trio.TrioTCPStream: ("read_lock", "write_lock"),
    _yamux.Yamux: ("streams_lock", "_write_lock"),
    _yamux.YamuxStream: ("window_lock", "close_lock"),
    _rw_lock.ReadWriteLock: ("_readers_lock",),
    _net_stream.NetStream: ("_state_lock",),
}
"""The classes whose instances get quick locks, and the attributes holding them."""


def _quick_init(init: Callable[..., None], attrs: tuple[str, ...]) -> Callable[..., None]:
    @functools.wraps(init)
    def quick(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        for attr in attrs:
            lock = getattr(self, attr, None)
            if isinstance(lock, trio.Lock | trio.Semaphore):
                setattr(self, attr, QuickLock(lock))

    quick.peerdesk_quick_locks = attrs  # type: ignore[attr-defined]
    return quick


def quicken_locks() -> None:
    """Quick locks in every listed object made from now on (idempotent)."""
    for cls, attrs in QUICK.items():
        init = vars(cls)["__init__"]
        if not hasattr(init, "peerdesk_quick_locks"):
            setattr(cls, "__init__", _quick_init(init, attrs))  # noqa: B010 (mypy: a method)


def locks_quickened() -> bool:
    return all(hasattr(vars(cls)["__init__"], "peerdesk_quick_locks") for cls in QUICK)
