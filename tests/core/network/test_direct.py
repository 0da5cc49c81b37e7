"""Direct messages between real peers on loopback (wire-protocol.md §3)."""

from __future__ import annotations

import base64
import struct

import pytest
import trio

from core.events import Delivery, PeerData
from core.network.direct import DeliveryFailed, DirectConfig
from core.network.framing import dumps
from core.peer import PeerConfig, new_peer
from tests.conftest import Recorder, connect, fast_config, peer_group

CHAT = "/chat/1.0.0"


async def test_thousand_messages_all_acked_in_order() -> None:
    async with peer_group(2) as [(a, ra), (b, rb)]:
        b.start_protocol(CHAT)
        await connect(a, b)
        msgs = [a.enqueue(str(b.peer_id), CHAT, {"n": i}) for i in range(1000)]
        with trio.fail_after(60):
            for msg in msgs:
                await msg.wait()
        await rb.wait_for(lambda: len(rb.of(PeerData)) == 1000)
        assert [e.data["n"] for e in rb.of(PeerData)] == list(range(1000))
        assert all(e.peer == str(a.peer_id) and e.protocol == CHAT for e in rb.of(PeerData))
        delivered = [e for e in ra.of(Delivery) if e.delivered]
        assert len(delivered) == 1000


async def test_reply_on_same_protocol_both_ways() -> None:
    async with peer_group(2) as [(a, ra), (b, rb)]:
        a.start_protocol(CHAT)
        b.start_protocol(CHAT)
        await connect(a, b)
        await a.send(str(b.peer_id), CHAT, "ping")
        await b.send(str(a.peer_id), CHAT, {"reply": "pong"})
        await ra.wait_for(lambda: ra.of(PeerData))
        assert ra.of(PeerData)[0].data == {"reply": "pong"}
        assert rb.of(PeerData)[0].data == "ping"


async def test_unstarted_protocol_fails_and_is_reported() -> None:
    async with peer_group(2) as [(a, ra), (b, rb)]:
        await connect(a, b)
        with pytest.raises(DeliveryFailed):
            await a.send(str(b.peer_id), "/nobody/1.0.0", 1)
        assert [e.delivered for e in ra.of(Delivery)] == [False]
        assert not rb.of(PeerData)


async def test_stopped_protocol_refuses_data() -> None:
    async with peer_group(2) as [(a, _), (b, rb)]:
        b.start_protocol(CHAT)
        await connect(a, b)
        await a.send(str(b.peer_id), CHAT, "first")
        b.stop_protocol(CHAT)
        with pytest.raises(DeliveryFailed):
            await a.send(str(b.peer_id), CHAT, "second")
        assert [e.data for e in rb.of(PeerData)] == ["first"]


async def test_delivery_resumes_after_receiver_restarts() -> None:
    async with trio.open_nursery() as nursery, peer_group(1) as [(a, _)]:
        rb = Recorder()
        b = new_peer(fast_config(), rb)
        key = b.key_pair
        await nursery.start(b.run)
        b.start_protocol(CHAT)
        addr = b.listen_addrs()[0]
        port = addr.split("/tcp/")[1].split("/")[0]
        await a.connect(addr)
        await a.send(str(b.peer_id), CHAT, "before")
        b.stop()
        await b.stopped.wait()

        # While b is down: the first message exhausts its attempts and fails (reported), the
        # queue turns unreachable, and later messages wait for b instead of failing.
        first = a.enqueue(str(b.peer_id), CHAT, "lost-while-down")
        with pytest.raises(DeliveryFailed):
            with trio.fail_after(15):
                await first.wait()
        waiting = [a.enqueue(str(b.peer_id), CHAT, f"queued-{i}") for i in range(5)]
        await trio.sleep(0.5)
        assert not any(m.done.is_set() for m in waiting)

        rb2 = Recorder()
        b2 = new_peer(fast_config(listen_addrs=[f"/ip4/127.0.0.1/tcp/{port}"]), rb2, key_pair=key)
        await nursery.start(b2.run)
        b2.start_protocol(CHAT)
        with trio.fail_after(15):
            for msg in waiting:
                await msg.wait()
        assert [e.data for e in rb2.of(PeerData)] == [f"queued-{i}" for i in range(5)]
        b2.stop()


async def test_duplicate_id_delivered_once() -> None:
    """A re-send after a lost ack carries the same id: the receiver acks it again but
    delivers it once."""
    async with peer_group(2) as [(a, _), (b, rb)]:
        b.start_protocol(CHAT)
        await connect(a, b)
        stream = await a.host.new_stream(b.peer_id, [CHAT])

        frame = dumps({"type": "data", "id": "42-0", "data": base64.b64encode(b'{"x":1}').decode()})
        for _ in range(2):
            await stream.write(struct.pack(">I", len(frame)) + frame)
        acks = []
        with trio.fail_after(5):
            for _ in range(2):
                (n,) = struct.unpack(">I", await _read(stream, 4))
                acks.append(await _read(stream, n))
        assert acks == [b'{"type":"ack","id":"42-0"}'] * 2
        await trio.sleep(0.2)
        assert [e.data for e in rb.of(PeerData)] == [{"x": 1}]


async def test_malformed_frames_do_not_hurt_the_peer() -> None:
    async with peer_group(2) as [(a, _), (b, rb)]:
        b.start_protocol(CHAT)
        bad_frames = [
            b"not json",
            b"[1,2,3]",
            dumps({"type": "data", "id": 7, "data": "x"}),
            dumps({"type": "data", "id": "1", "data": "!!!not base64"}),
            dumps({"type": "data", "id": "2", "data": base64.b64encode(b"not json").decode()}),
            dumps({"type": "mystery"}),
        ]
        await connect(a, b)
        stream = await a.host.new_stream(b.peer_id, [CHAT])
        for frame in bad_frames:
            await stream.write(struct.pack(">I", len(frame)) + frame)
        good = dumps({"type": "data", "id": "3", "data": base64.b64encode(b'"ok"').decode()})
        await stream.write(struct.pack(">I", len(good)) + good)
        with trio.fail_after(5):
            (n,) = struct.unpack(">I", await _read(stream, 4))
            assert await _read(stream, n) == b'{"type":"ack","id":"3"}'
        # A hostile length prefix ends that stream without allocating 4 GiB...
        stream2 = await a.host.new_stream(b.peer_id, [CHAT])
        await stream2.write(b"\xff\xff\xff\xff" + b"x" * 100)
        await trio.sleep(0.3)
        # ...and the peer goes on serving.
        await a.send(str(b.peer_id), CHAT, "still alive")
        assert [e.data for e in rb.of(PeerData)] == ["ok", "still alive"]


async def _read(stream, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        buf += await stream.read(n - len(buf))
    return buf


async def test_messages_behind_a_failed_one_fail_with_it_in_order() -> None:
    """Issue 13: while b is down, 1 fails after its attempts; 2 and 3, queued behind it, fail
    with it instead of being delivered later without 1. A message sent afterwards waits for b
    and is delivered once b is back."""
    async with trio.open_nursery() as nursery, peer_group(1) as [(a, _)]:
        b = new_peer(fast_config(), Recorder())
        key = b.key_pair
        await nursery.start(b.run)
        b.start_protocol(CHAT)
        addr = b.listen_addrs()[0]
        port = addr.split("/tcp/")[1].split("/")[0]
        await a.connect(addr)
        await a.send(str(b.peer_id), CHAT, "before")
        b.stop()
        await b.stopped.wait()

        batch = [a.enqueue(str(b.peer_id), CHAT, f"down-{i}") for i in (1, 2, 3)]
        with trio.fail_after(15):
            for msg in batch:
                await msg.done.wait()
        assert [m.delivered for m in batch] == [False, False, False]
        assert "earlier message failed" in batch[1].error

        later = a.enqueue(str(b.peer_id), CHAT, "after")
        rb2 = Recorder()
        b2 = new_peer(fast_config(listen_addrs=[f"/ip4/127.0.0.1/tcp/{port}"]), rb2, key_pair=key)
        await nursery.start(b2.run)
        b2.start_protocol(CHAT)
        with trio.fail_after(15):
            await later.wait()
        await trio.sleep(0.3)
        assert [e.data for e in rb2.of(PeerData)] == ["after"]
        b2.stop()


def _data_frame(msg_id: str, value: object) -> bytes:
    body = dumps({"type": "data", "id": msg_id, "data": base64.b64encode(dumps(value)).decode()})
    return struct.pack(">I", len(body)) + body


def _ack_frame(msg_id: str) -> bytes:
    body = dumps({"type": "ack", "id": msg_id})
    return struct.pack(">I", len(body)) + body


async def test_a_burst_of_frames_is_delivered_in_order_and_answered_in_one_write() -> None:
    """200 data frames in one write arrive in one read: each is delivered once and in order,
    and their acks come back together (one write; an ack per write would need 200 reads)."""
    async with peer_group(2) as [(a, _), (b, rb)]:
        b.start_protocol(CHAT)
        await connect(a, b)
        stream = await a.host.new_stream(b.peer_id, [CHAT])
        ids = [f"77-{i}" for i in range(200)]
        await stream.write(b"".join(_data_frame(i, {"n": n}) for n, i in enumerate(ids)))
        expected = b"".join(_ack_frame(i) for i in ids)
        got, reads = b"", 0
        with trio.fail_after(10):
            while len(got) < len(expected):
                got += await stream.read(len(expected) - len(got))
                reads += 1
        assert got == expected
        assert reads <= 5
        await rb.wait_for(lambda: len(rb.of(PeerData)) == 200)
        assert [e.data["n"] for e in rb.of(PeerData)] == list(range(200))


async def test_frames_split_at_any_byte_are_put_back_together() -> None:
    """Frames written a few bytes at a time, their boundaries falling anywhere, are each
    delivered and acked once."""
    async with peer_group(2) as [(a, _), (b, rb)]:
        b.start_protocol(CHAT)
        await connect(a, b)
        stream = await a.host.new_stream(b.peer_id, [CHAT])
        ids = [f"78-{i}" for i in range(20)]
        wire = b"".join(_data_frame(i, f"piece {n}") for n, i in enumerate(ids))
        with trio.fail_after(20):
            for start in range(0, len(wire), 7):
                await stream.write(wire[start : start + 7])
            expected = b"".join(_ack_frame(i) for i in ids)
            got = b""
            while len(got) < len(expected):
                got += await stream.read(len(expected) - len(got))
        assert got == expected
        await rb.wait_for(lambda: len(rb.of(PeerData)) == 20)
        assert [e.data for e in rb.of(PeerData)] == [f"piece {n}" for n in range(20)]


class _StepCounter(trio.abc.Instrument):
    """Counts the scheduler steps of tasks whose name ends with ``suffix``."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith(self.suffix):
            self.steps += 1


async def test_a_sender_waiting_for_an_ack_sleeps_instead_of_spinning() -> None:
    """The wait for an ack once ended at once (a time.monotonic() deadline given to trio's
    clock), so the sender looped without pause while messages were in flight."""
    silent = "/silent/1.0.0"

    def patient() -> PeerConfig:
        return fast_config(direct=DirectConfig(ack_timeout=30.0))

    async with peer_group(2, config=patient) as [(a, _), (b, _)]:
        held = trio.Event()

        async def read_and_never_ack(stream) -> None:  # type: ignore[no-untyped-def]
            await stream.read(1)
            held.set()
            await trio.sleep_forever()

        b.host.set_stream_handler(silent, read_and_never_ack)
        await connect(a, b)
        msg = a.enqueue(str(b.peer_id), silent, "unanswered")
        with trio.fail_after(10):
            await held.wait()
        counter = _StepCounter("DirectMessaging._worker")
        trio.lowlevel.add_instrument(counter)
        try:
            await trio.sleep(1.0)
        finally:
            trio.lowlevel.remove_instrument(counter)
        assert counter.steps < 20, counter.steps  # spinning: tens of thousands
        assert not msg.done.is_set()  # still waiting for its ack
