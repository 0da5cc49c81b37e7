"""An honest sender that outpaces a slow reader is slowed by flow control, never cut off by the
bound on unread data (core/libp2p_compat/yamux.py). Real py-libp2p hosts on loopback."""

from __future__ import annotations

import trio
from libp2p.custom_types import TProtocol

from tests.conftest import connect, peer_group

PROTO = TProtocol("/peerdesk-test/slow-reader/1.0.0")
MiB = 1024 * 1024


async def test_a_fast_honest_sender_to_a_slow_reader_delivers_everything() -> None:
    """The reader keeps up at first (the library grows the receive window to its 16 MiB
    maximum), then is busy for 3 s: the sender fills the whole window (plus the library's
    overshoot), waits for credit, and goes on when the reader catches up."""
    total = 64 * MiB
    received = 0
    done = trio.Event()

    async def slow_reader(stream) -> None:  # type: ignore[no-untyped-def]
        nonlocal received
        paused = False
        while received < total:
            chunk = await stream.read(256 * 1024)
            if not chunk:
                break
            received += len(chunk)
            if received > 24 * MiB and not paused:
                paused = True
                await trio.sleep(3.0)
        done.set()

    async with peer_group(2) as [(sender, _), (reader, _)]:
        reader.host.set_stream_handler(PROTO, slow_reader)
        await connect(sender, reader)
        stream = await sender.host.new_stream(reader.peer_id, [PROTO])
        frame = b"z" * (16 * 1024)
        with trio.fail_after(30):
            for _ in range(total // len(frame)):
                await stream.write(frame)
            await done.wait()
        assert received == total
