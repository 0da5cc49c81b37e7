"""Locks on py-libp2p's per-frame path that do not yield when free (core/libp2p_compat/locks.py).
Real py-libp2p hosts on loopback for where the locks are; trio's own checkers for what they do."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from libp2p.custom_types import TProtocol

from core import libp2p_compat as compat
from core.libp2p_compat.locks import QUICK, QuickLock
from tests.conftest import connect, peer_group

ECHO = TProtocol("/peerdesk-test/locks-echo/1.0.0")


async def test_every_listed_lock_of_a_real_connection_is_quick() -> None:
    """Fails when py-libp2p renames, moves or stops making one of the locks replaced: each
    object on a real TCP + Noise + Yamux stream must carry a QuickLock at each listed name."""

    async def echo(stream: Any) -> None:
        await stream.write(await stream.read(5))

    async with peer_group(2) as [(a, _), (b, _)]:
        b.host.set_stream_handler(ECHO, echo)
        await connect(a, b)
        stream: Any = await a.host.new_stream(b.peer_id, [ECHO])
        with trio.fail_after(10):
            await stream.write(b"hello")
            assert await stream.read(5) == b"hello"
        yamux_stream = stream.muxed_stream
        objects = {
            type(stream): stream,
            type(yamux_stream): yamux_stream,
            type(yamux_stream.rw_lock): yamux_stream.rw_lock,
            type(stream.muxed_conn): stream.muxed_conn,
            type(
                tcp := stream.muxed_conn.secured_conn.conn.read_writer.read_write_closer.stream
            ): tcp,
        }
        assert set(objects) == set(QUICK)
        for cls, attrs in QUICK.items():
            for attr in attrs:
                assert isinstance(getattr(objects[cls], attr), QuickLock), (cls, attr)
        # Kept trio's, so a read of buffered data still lets other tasks run (locks.py).
        assert type(yamux_stream.rw_lock._writer_lock) is trio.Semaphore
    assert compat.locks_quickened()
    assert compat.yamux_buffers_bounded()  # the Yamux init it wraps still bounds buffers


async def test_trio_locks_still_yield_when_free() -> None:
    """Why this exists: a free trio Lock or Semaphore still passes through the scheduler."""
    for lock in (trio.Lock(), trio.Semaphore(1)):
        with trio.testing.assert_checkpoints():
            await lock.acquire()
        lock.release()


async def test_a_free_quick_lock_does_not_yield() -> None:
    """No other task runs while a free QuickLock is taken and given back, again and again
    (it is still a cancel point: see the cancellation test)."""
    for inner in (trio.Lock(), trio.Semaphore(1)):
        lock = QuickLock(inner)
        others_ran: list[bool] = []

        async def other(ran: list[bool]) -> None:
            ran.append(True)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(other, others_ran)  # runs at this task's next scheduler pass
            for _ in range(100):
                async with lock:
                    pass
                await lock.acquire()
                lock.release()
            assert others_ran == []
        assert others_ran == [True]


async def test_a_taken_quick_lock_makes_others_wait_in_turn() -> None:
    lock = QuickLock(trio.Lock())
    order: list[int] = []

    async def take(i: int) -> None:
        async with lock:
            order.append(i)
            await trio.sleep(0.01)

    await lock.acquire()
    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(take, i)
            await trio.testing.wait_all_tasks_blocked()
        assert order == []
        lock.release()
    assert order == [0, 1, 2]


async def test_cancellation_reaches_a_quick_lock_waiter_and_an_already_cancelled_task() -> None:
    lock = QuickLock(trio.Lock())
    release = trio.Event()

    async def hold() -> None:
        async with lock:
            await release.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold)
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(0.05) as waited:
            await lock.acquire()  # taken by the other task: waits, and the timeout gets it
        assert waited.cancelled_caught
        release.set()
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await lock.acquire()  # free, but this task is cancelled: trio's semantics
    lock.acquire_nowait()  # and the cancelled acquire did not take it
    lock.release()
