"""Yamux window updates sent as go-yamux sends them (core/libp2p_compat/yamux.py): one per half
window consumed instead of one per read. Real py-libp2p hosts on loopback."""

from __future__ import annotations

import inspect
import struct

import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.stream_muxer.yamux import yamux as _yamux

from core import libp2p_compat as compat
from core.libp2p_compat import yamux as compat_yamux
from tests.conftest import connect, peer_group

PROTO = TProtocol("/peerdesk-test/window-updates/1.0.0")


def test_the_library_still_credits_on_every_read_and_has_what_we_use() -> None:
    """Fails when py-libp2p changes the code replaced, or the parts the replacement calls."""
    src = inspect.getsource(compat_yamux.LIBRARY_WINDOW_UPDATE)
    assert "_yamux_release_on_read()" in src
    assert "0 < delta < threshold and bytes_read > 0" in src
    assert "self.target_recv_window - (self.recv_window + buffered)" in src
    read_src = inspect.getsource(_yamux.YamuxStream.read)
    assert read_src.count("_auto_tune_and_send_window_update(bytes_read=") == 2
    for name in ("_grow_threshold", "_grow_to_delta", "_apply_autotune_epoch"):
        assert callable(getattr(_yamux.YamuxStream, name))
    assert ".recv_window -= len(data)" in inspect.getsource(_yamux.Yamux.handle_incoming)
    assert compat.window_updates_coalesced()


async def _window_updates_for(frames: int, size: int) -> tuple[int, int]:
    """Send ``frames`` length-prefixed frames of ``size`` bytes, read them 4 + ``size`` bytes
    at a time; return (bytes received intact, WINDOW_UPDATE frames the reader sent)."""
    received = bytearray()
    done = trio.Event()
    updates = 0

    async def reader(stream) -> None:  # type: ignore[no-untyped-def]
        nonlocal updates
        conn = stream.muxed_conn
        write_frame = conn._write_frame

        async def counting(data: bytes) -> None:
            nonlocal updates
            _, kind, _, sid, _ = struct.unpack(_yamux.YAMUX_HEADER_FORMAT, data[:12])
            if kind == _yamux.TYPE_WINDOW_UPDATE and sid == stream.muxed_stream.stream_id:
                updates += 1
            await write_frame(data)

        conn._write_frame = counting
        while len(received) < frames * (4 + size):
            (n,) = struct.unpack(">I", await stream.read(4))
            body = b""
            while len(body) < n:
                body += await stream.read(n - len(body))
            received.extend(struct.pack(">I", n) + body)
        done.set()

    async with peer_group(2) as [(sender, _), (receiver, _)]:
        receiver.host.set_stream_handler(PROTO, reader)
        await connect(sender, receiver)
        stream = await sender.host.new_stream(receiver.peer_id, [PROTO])
        payload = struct.pack(">I", size) + bytes(range(256)) * (size // 256)
        with trio.fail_after(60):
            for _ in range(frames):
                await stream.write(payload)
            await done.wait()
        assert bytes(received) == payload * frames
    return len(received), updates


async def test_small_frames_cost_one_window_update_per_half_window() -> None:
    """2 000 frames of 4 + 256 bytes (520 KiB): the library sent two updates per frame; go-yamux
    semantics send one per 128 KiB consumed (the window grows as it auto-tunes)."""
    total, updates = await _window_updates_for(2000, 256)
    assert total == 2000 * 260
    assert 1 <= updates <= total // (64 * 1024)


async def test_a_large_transfer_keeps_streaming() -> None:
    """32 MiB in 64 KiB frames: the sender never stalls for credit (it would time out after
    5 s in the library's write), and every byte arrives in order."""
    total, updates = await _window_updates_for(512, 64 * 1024)
    assert total == 512 * (4 + 64 * 1024)
    assert updates >= 2


def test_the_library_still_reads_its_tuning_knobs_at_call_time() -> None:
    """The snapshot replaces ``_py_yamux_env``: the library must still look the knobs up
    through it (module global, called per window check), and it must still read os.getenv."""
    assert "os.getenv(" in inspect.getsource(compat_yamux.LIBRARY_YAMUX_ENV)
    assert "os.environ" in inspect.getsource(compat_yamux.LIBRARY_YAMUX_ENV_SET)
    assert "_py_yamux_env(" in inspect.getsource(_yamux._yamux_batch_threshold_divisor)
    assert "_yamux_disable_hysteresis()" in inspect.getsource(_yamux.YamuxStream._grow_threshold)
    assert compat.yamux_tuning_frozen()


def test_the_tuning_snapshot_answers_as_the_library_would(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setenv("PY_YAMUX_BATCH_THRESHOLD_DIV", "4")
    monkeypatch.delenv("PY_YAMUX_ASSUME_RTT_MS", raising=False)
    frozen = (_yamux._py_yamux_env, _yamux._py_yamux_env_set)
    try:
        compat_yamux.freeze_yamux_tuning()
        assert _yamux._yamux_batch_threshold_divisor() == 4
        assert not _yamux._py_yamux_env_set("ASSUME_RTT_MS")
        assert _yamux._py_yamux_env("RELEASE_ON_READ", "1") == "1"
        assert os.environ["PY_YAMUX_BATCH_THRESHOLD_DIV"] == "4"
    finally:
        _yamux._py_yamux_env, _yamux._py_yamux_env_set = frozen


# -- a frame write cut by its caller's timeout -------------------------------------------------

ECHO = TProtocol("/peerdesk-test/echo/1.0.0")


async def _connection_survives_a_cut_write() -> bool:
    """The sender's socket takes a 5 KB frame in two halves 0.3 s apart (a full socket), and
    the write's caller gives up after 0.1 s. Does the connection still carry a new stream?"""
    from typing import Any

    async def echo(stream: Any) -> None:
        while data := await stream.read(65536):
            if data.startswith(b"hello"):
                await stream.write(data)

    async with peer_group(2) as [(sender, _), (receiver, _)]:
        receiver.host.set_stream_handler(ECHO, echo)
        await connect(sender, receiver)
        stream = await sender.host.new_stream(receiver.peer_id, [ECHO])
        raw: Any = stream.muxed_conn.secured_conn.conn.read_writer.read_write_closer  # type: ignore[attr-defined]
        write = raw.write
        halves = True

        async def slow(data: bytes) -> None:
            if halves and len(data) > 1000:
                await write(data[: len(data) // 2])
                await trio.sleep(0.3)
                data = data[len(data) // 2 :]
            await write(data)

        raw.write = slow
        with trio.move_on_after(0.1):
            await stream.write(b"x" * 5000)
        halves = False
        await trio.sleep(0.5)
        try:
            with trio.fail_after(5):
                probe = await sender.host.new_stream(receiver.peer_id, [ECHO])
                await probe.write(b"hello")
                return await probe.read(5) == b"hello"
        except Exception:
            return False


async def test_library_loses_the_connection_to_a_write_cut_half_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "shield" not in inspect.getsource(compat_yamux.LIBRARY_WRITE_FRAME)
    monkeypatch.setattr(_yamux.Yamux, "_write_frame", compat_yamux.LIBRARY_WRITE_FRAME)
    assert not await _connection_survives_a_cut_write()


async def test_a_started_frame_is_written_whole_and_the_connection_lives() -> None:
    assert compat.frames_written_whole()
    assert await _connection_survives_a_cut_write()


async def test_a_frame_stuck_past_its_bound_ends_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A frame the socket will not take: its caller's own timeout does not cut it, the
    frame's bound (go-yamux's write timeout) gives the connection up."""
    from typing import Any

    from libp2p.network.stream.exceptions import StreamError

    monkeypatch.setattr(compat_yamux, "FRAME_WRITE_TIMEOUT", 0.3)

    async def echo(stream: Any) -> None:
        await stream.write(await stream.read(5))

    async with peer_group(2) as [(sender, _), (receiver, _)]:
        receiver.host.set_stream_handler(ECHO, echo)
        await connect(sender, receiver)
        stream: Any = await sender.host.new_stream(receiver.peer_id, [ECHO])
        raw: Any = stream.muxed_conn.secured_conn.conn.read_writer.read_write_closer

        await trio.sleep(0.5)  # identify, profile names and pubsub hellos done: ours is first

        writers: list[str] = []

        async def stuck(data: bytes) -> None:
            writers.append(trio.lowlevel.current_task().name)
            await trio.sleep_forever()

        raw.write = stuck
        failed = None
        start = trio.current_time()
        with trio.fail_after(5), trio.move_on_after(0.05):
            try:
                await stream.write(b"hello")
            except StreamError as exc:  # the library's wrapping of our RawConnError
                failed = exc
        assert writers and writers[0].startswith("<test "), writers  # our frame got stuck
        # Not cut at 0.05 s: the frame's own bound ended the write. The caller sees the
        # library's StreamError, or its own cancellation when the library's error path
        # passes through the scheduler after the bound (its deadline is long past by then).
        assert trio.current_time() - start >= 0.3
        assert failed is None or "timed out" in str(failed), failed
        with trio.fail_after(5):
            while sender.host.get_network().get_connections(receiver.peer_id):
                await trio.sleep(0.05)
