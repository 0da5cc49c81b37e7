"""Yamux: a peer that writes past its receive window is not buffered without end.

py-libp2p 0.8.1's ``Yamux.handle_incoming`` appends every DATA frame to the stream's buffer and,
when the sender overran the window, only logs a warning and sets the window to 0: a peer that
ignores flow control makes us hold whatever it sends (600 MiB from one peer in the attack run).
go-yamux treats that as a protocol error. Here each stream's buffer refuses to grow past the
largest window the library ever grants (``MAX_WINDOW_SIZE``): the library's own error path for
a failed DATA read then marks the stream's receive side closed, so the rest is dropped, the
reader sees what arrived within the window, then end of stream.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import trio
from libp2p.network.connection.exceptions import RawConnError
from libp2p.stream_muxer.yamux import yamux as _yamux

log = logging.getLogger(__name__)

BUFFER_LIMIT = 2 * _yamux.MAX_WINDOW_SIZE
"""An honest sender stays within the window we granted, but the library's grants overshoot the
16 MiB maximum slightly (measured: 16.01 MiB unread from an honest py-libp2p sender to a slow
reader, one frame past it): twice the window never cuts an honest stream and still bounds a
hostile one."""


class WindowExceeded(Exception):
    """The remote wrote past the receive window we granted it."""


class _WindowedBuffer(bytearray):
    def extend(self, data: Any) -> None:  # the library appends DATA frames with extend()
        if len(self) + len(data) > BUFFER_LIMIT:
            log.warning("yamux: a peer wrote past the receive window; its stream is cut")
            raise WindowExceeded(f"{len(self) + len(data)} unread bytes > {BUFFER_LIMIT}")
        super().extend(data)


class _WindowedBuffers(dict[int, bytearray]):
    """``Yamux.stream_buffers`` whose new entries are window-bounded buffers."""

    def __setitem__(self, key: int, value: bytearray) -> None:
        if type(value) is bytearray:
            value = _WindowedBuffer(value)
        super().__setitem__(key, value)


_original_init = _yamux.Yamux.__init__


def _init(self: _yamux.Yamux, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    self.stream_buffers = _WindowedBuffers(self.stream_buffers)


def bound_yamux_buffers() -> None:
    """Install the bound on every Yamux connection made from now on (idempotent)."""
    if not yamux_buffers_bounded():
        _yamux.Yamux.__init__ = _init  # type: ignore[method-assign]


def yamux_buffers_bounded() -> bool:
    init = _yamux.Yamux.__init__
    while init is not _init and hasattr(init, "__wrapped__"):  # locks.py wraps it too
        init = init.__wrapped__
    return init is _init


# -- window updates as go-yamux sends them ------------------------------------------------------
#
# py-libp2p 0.8.1 credits the sender after every read: ``_auto_tune_and_send_window_update`` has
# a "partial slack" branch (any consumed byte) and a release-on-read branch (on by default), so
# a reader of small frames sends a WINDOW_UPDATE, each its own Noise message, for every read —
# two per length-prefixed message, and it over-credits (``delta + bytes_read``). go-yamux
# (``sendWindowUpdate``) credits only once the reader has consumed half the window, which keeps
# an honest sender streaming and costs one update per half window.


async def _coalesced_window_update(self: _yamux.YamuxStream, *, bytes_read: int = 0) -> None:
    """Credit the sender once at least half the receive window has been consumed (go-yamux),
    with the library's own GrowTo and auto-tuning of the window size."""
    _ = bytes_read  # consumption shows in recv_window + buffered; the count is not needed
    async with self.window_lock:
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        delta = self.target_recv_window - (self.recv_window + buffered)
        if delta <= 0 or delta < self._grow_threshold():
            return
        increment = self._grow_to_delta(buffered) + self._apply_autotune_epoch(buffered)
    if increment > 0:
        await self.send_window_update(increment, skip_lock=True)


LIBRARY_WINDOW_UPDATE = _yamux.YamuxStream._auto_tune_and_send_window_update
"""The library's own, kept so the compat test can check it still has the per-read branches
this replaces."""


def coalesce_window_updates() -> None:
    """Send Yamux window updates as go-yamux does, on every stream from now on (idempotent)."""
    _yamux.YamuxStream._auto_tune_and_send_window_update = _coalesced_window_update  # type: ignore[method-assign]


def window_updates_coalesced() -> bool:
    return _yamux.YamuxStream._auto_tune_and_send_window_update is _coalesced_window_update


# -- tuning knobs read once ---------------------------------------------------------------------
#
# py-libp2p 0.8.1 reads its PY_YAMUX_* perf-harness variables "at call time": every window
# check of every frame calls ``os.getenv`` two to four times (about 4 % of a swarm peer's CPU
# under topic traffic). Nothing sets them while a peer runs, so they are read once here.

LIBRARY_YAMUX_ENV = _yamux._py_yamux_env
LIBRARY_YAMUX_ENV_SET = _yamux._py_yamux_env_set
_PREFIX = "PY_YAMUX_"


def freeze_yamux_tuning() -> None:
    """Snapshot the PY_YAMUX_* variables now; the library's lookups read the snapshot."""
    knobs = {k[len(_PREFIX) :]: v for k, v in os.environ.items() if k.startswith(_PREFIX)}

    def env(name: str, default: str = "") -> str:
        return knobs.get(name, default)

    def env_set(name: str) -> bool:
        return name in knobs

    _yamux._py_yamux_env = env
    _yamux._py_yamux_env_set = env_set


def yamux_tuning_frozen() -> bool:
    return _yamux._py_yamux_env is not LIBRARY_YAMUX_ENV


# -- a frame, once started, is written whole -------------------------------------------------
#
# py-libp2p 0.8.1 writes each Yamux frame as one Noise message (``Yamux._write_frame``: under
# the connection's write lock, ``secured_conn.write``) with no shield. A caller's timeout
# (a ping's 5 s, a DHT ask's 4 s, any ``move_on_after``) that lands while the socket is full
# cancels the write half-way: part of a Noise message, or none after its nonce was used, is
# on the wire, and the other end's next decryption fails ("NoiseInvalidMessage: Failed
# authentication of message"), which ends the connection, and every stream on it, for both.
# Seen in the swarm lab: 19-33 connections per minute at 10 members, the main cause of member
# pairs falling apart. go writes whole frames and gives up on the connection on a deadline.

FRAME_WRITE_TIMEOUT = 10.0
"""Seconds a started frame may take to reach the socket before the connection is given up
(go-yamux's ConnectionWriteTimeout)."""
LIBRARY_WRITE_FRAME = _yamux.Yamux._write_frame


async def _whole_frame(self: _yamux.Yamux, data: bytes) -> None:
    async with self._write_lock:  # waiting for the lock may be cancelled: nothing sent yet
        # Shielded from the caller, not from its own deadline (one scope: this is per frame).
        deadline = trio.current_time() + FRAME_WRITE_TIMEOUT
        with trio.CancelScope(shield=True, deadline=deadline) as waited:
            await self.secured_conn.write(data)
        if waited.cancelled_caught:
            log.warning(
                "yamux: a frame stuck for %.0f s; closing the connection", FRAME_WRITE_TIMEOUT
            )
            with trio.CancelScope(shield=True, deadline=trio.current_time() + 1.0):
                await self.secured_conn.close()
            raise RawConnError("yamux frame write timed out")
    # The caller's cancellation, held off while writing, lands here (the socket write already
    # let other tasks run, so no further pass through the scheduler is needed).
    await trio.lowlevel.checkpoint_if_cancelled()


def write_whole_frames() -> None:
    """Shield every Yamux frame write from its caller's cancellation (idempotent)."""
    _yamux.Yamux._write_frame = _whole_frame  # type: ignore[method-assign]


def frames_written_whole() -> bool:
    return _yamux.Yamux._write_frame is _whole_frame
