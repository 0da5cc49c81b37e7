"""Direct messages on application protocols — p2p-webapp's "virtual connections", made reliable.

One channel per (peer, protocol). Its stream is opened on the first send and reused; an inbound
stream from the peer on that protocol replaces it. Frames are wire-protocol.md §3: 4-byte length,
then ``{"type":"data","id","data":base64(json)}`` answered by ``{"type":"ack","id"}``.

Unlike the Go program (which sleeps 10 ms and assumes delivery) every message here ends as
*delivered* (the remote acked it) or *failed* (3 attempts with 2 s / 4 s backoff), and is
reported either way. Messages are pipelined (a window of unacknowledged frames) so throughput is
not one round trip per message; after a broken stream the unacknowledged ones are re-sent in
order, and the receiver's memory of recent ids turns a re-send after a lost ack into a bare ack.
A channel whose peer failed to answer becomes *unreachable*: later messages wait (bounded by
``patience``) while the peer is probed, and go out as soon as it is back. Order is kept: when a
message fails, those already queued behind it fail with it (never a later one delivered without
an earlier one).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from core import libp2p_compat as compat
from core.events import Delivery, EventSink, PeerData
from core.network.framing import (
    MAX_FRAME,
    FrameBudget,
    FrameError,
    FrameReader,
    StreamClosed,
    decode_json_object,
    dumps,
    encode_frame,
    loads,
)

log = logging.getLogger(__name__)


@dataclass
class DirectConfig:
    attempts: int = 3
    backoff: tuple[float, ...] = (2.0, 4.0)
    ack_timeout: float = 5.0
    open_timeout: float = 10.0
    window: int = 64
    idle_timeout: float = 30.0
    idle_check: float = 10.0
    patience: float = 120.0
    """How long a message may wait for an unreachable peer to come back before it fails."""
    probe_interval: float = 5.0
    max_frame: int = MAX_FRAME
    dedup_memory: int = 4096
    frame_body_timeout: float = 30.0
    """Once a frame's header is in, its body must follow within this: a sender that stops
    mid-frame loses the stream instead of keeping our buffer."""
    peer_frame_budget: int = 4 * MAX_FRAME
    """Bytes of unfinished inbound frames one peer may make us hold, over all its streams."""
    max_pending: int = 1024
    max_pending_bytes: int = 64 * 1024 * 1024
    """Queued (not yet sent) messages per channel, by count and by bytes: past either, enqueue
    refuses with QueueFull instead of holding without end for a peer that may never answer."""


MAX_ID = 128


class DeliveryFailed(Exception):
    pass


class QueueFull(Exception):
    """A channel already holds ``max_pending`` messages or ``max_pending_bytes`` for its peer."""


_counter = itertools.count()


def new_message_id() -> str:
    """Go's shape (``<unix-ns>-<n>``) with a process-wide counter so ids never repeat."""
    return f"{time.time_ns()}-{next(_counter)}"


@dataclass(eq=False)
class Outgoing:
    peer: ID
    protocol: str
    msg_id: str
    frame: bytes
    queued_at: float = field(default_factory=time.monotonic)
    attempts: int = 0
    sent_at: float = 0.0
    sent_on: _Stream | None = None
    delivered: bool | None = None
    error: str = ""
    done: trio.Event = field(default_factory=trio.Event)

    async def wait(self) -> None:
        """Return once acknowledged; raise DeliveryFailed if the message could not be delivered."""
        await self.done.wait()
        if not self.delivered:
            raise DeliveryFailed(self.error)


class _Stream:
    """A stream plus the write lock that keeps acks and data frames from interleaving."""

    def __init__(self, stream: INetStream) -> None:
        self.raw = stream
        self.write_lock = trio.Lock()
        self.last_activity = time.monotonic()
        self.broken = False

    async def write(self, data: bytes) -> None:
        # Taken at once when free (no extra trip through the scheduler: the muxer's own locks
        # already make several per write); waited for in turn otherwise.
        if self.write_lock.locked():
            await self.write_lock.acquire()
        else:
            self.write_lock.acquire_nowait()
        try:
            await self.raw.write(data)
        finally:
            self.write_lock.release()
        self.last_activity = time.monotonic()

    async def close(self) -> None:
        self.broken = True
        try:
            with trio.move_on_after(2):
                await self.raw.close()
        except Exception:
            log.debug("closing stream failed", exc_info=True)

    async def reset(self) -> None:
        self.broken = True
        try:
            with trio.move_on_after(2):
                await self.raw.reset()
        except Exception:
            log.debug("resetting stream failed", exc_info=True)


class _Channel:
    def __init__(self, peer: ID, protocol: str) -> None:
        self.peer = peer
        self.protocol = protocol
        self.pending: deque[Outgoing] = deque()
        self.inflight: OrderedDict[str, Outgoing] = OrderedDict()
        self.stream: _Stream | None = None
        self.unreachable = False
        self.worker_running = False
        self.recent_ids: OrderedDict[str, None] = OrderedDict()
        self.touched = time.monotonic()
        self._changed = trio.Event()

    def poke(self) -> None:
        self._changed.set()

    async def wait_change(self) -> None:
        await self._changed.wait()
        self._changed = trio.Event()


class DirectMessaging:
    """Owns every direct-message channel of one host."""

    def __init__(self, host: IHost, emit: EventSink, config: DirectConfig | None = None) -> None:
        self.host = host
        self.emit = emit
        self.config = config or DirectConfig()
        self.started: set[str] = set()
        self._channels: dict[tuple[ID, str], _Channel] = {}
        self._streams: set[_Stream] = set()
        self._budgets: dict[ID, tuple[FrameBudget, int]] = {}
        """Per peer: the budget of unfinished inbound frames, and how many streams read on it."""
        self._nursery: trio.Nursery | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._idle_reaper)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._fail_all("the peer stopped")

    def _fail_all(self, reason: str) -> None:
        """Nothing is dropped silently, not even on shutdown: every waiting sender hears."""
        for ch in self._channels.values():
            for msg in [*ch.inflight.values(), *ch.pending]:
                self._resolve(msg, False, reason)
            ch.inflight.clear()
            ch.pending.clear()

    def start_protocol(self, protocol: str) -> bool:
        if protocol in self.started:
            return False
        self.started.add(protocol)
        self.host.set_stream_handler(TProtocol(protocol), self._on_inbound_stream)
        return True

    def stop_protocol(self, protocol: str) -> None:
        if protocol in self.started:
            self.started.discard(protocol)
            self.host.remove_stream_handler(TProtocol(protocol))

    def peer_seen(self, peer: ID) -> None:
        """A connection to ``peer`` exists again: wake its channels waiting out backoff or
        unreachability."""
        for (p, _), ch in self._channels.items():
            if p == peer:
                ch.unreachable = False
                ch.poke()

    # -- sending ------------------------------------------------------------------------------

    def enqueue(self, peer: ID, protocol: str, value: Any) -> Outgoing:
        """Queue one message; the returned handle resolves when it is delivered or failed."""
        if self._nursery is None:
            raise RuntimeError("direct messaging is not running")
        if peer == self.host.get_id():
            raise ValueError("cannot send a direct message to ourselves")
        msg_id = new_message_id()
        payload = base64.b64encode(dumps(value)).decode()
        frame = encode_frame(dumps({"type": "data", "id": msg_id, "data": payload}))
        if len(frame) - 4 > self.config.max_frame:
            raise ValueError(f"message of {len(frame)} bytes exceeds the frame limit")
        msg = Outgoing(peer, protocol, msg_id, frame)
        ch = self._channel(peer, protocol)
        waiting = [*ch.pending, *ch.inflight.values()]
        if len(waiting) >= self.config.max_pending:
            raise QueueFull(f"{len(waiting)} messages already wait for {peer} on {protocol}")
        if sum(len(m.frame) for m in waiting) + len(frame) > self.config.max_pending_bytes:
            raise QueueFull(
                f"more than {self.config.max_pending_bytes} bytes would wait for {peer} on "
                f"{protocol}"
            )
        ch.touched = time.monotonic()
        ch.pending.append(msg)
        ch.poke()
        if not ch.worker_running:
            ch.worker_running = True
            self._nursery.start_soon(self._worker, ch)
        return msg

    async def send(self, peer: ID, protocol: str, value: Any) -> str:
        msg = self.enqueue(peer, protocol, value)
        await msg.wait()
        return msg.msg_id

    def _channel(self, peer: ID, protocol: str) -> _Channel:
        key = (peer, protocol)
        ch = self._channels.get(key)
        if ch is None:
            ch = self._channels[key] = _Channel(peer, protocol)
        return ch

    def _resolve(self, msg: Outgoing, delivered: bool, error: str = "") -> None:
        if msg.done.is_set():
            return
        msg.delivered, msg.error = delivered, error
        msg.done.set()
        self.emit(Delivery(str(msg.peer), msg.protocol, msg.msg_id, delivered, error))

    async def _worker(self, ch: _Channel) -> None:
        try:
            while ch.pending or ch.inflight:
                if ch.unreachable:
                    await self._wait_reachable(ch)
                    continue
                try:
                    await self._pump(ch)
                except (FrameError, OSError, trio.TooSlowError, _AttemptFailed) as exc:
                    await self._after_failure(ch, str(exc) or type(exc).__name__)
                except Exception as exc:  # py-libp2p raises many unrelated types on a dead peer
                    await self._after_failure(ch, f"{type(exc).__name__}: {exc}")
        finally:
            ch.worker_running = False

    async def _pump(self, ch: _Channel) -> None:
        """Write what the window allows, then wait for an ack, new work, or trouble."""
        stream = ch.stream
        if stream is None or stream.broken:
            stream = await self._open(ch)
        batch = []
        now = time.monotonic()
        while ch.pending and len(ch.inflight) < self.config.window:
            msg = ch.pending.popleft()
            ch.inflight[msg.msg_id] = msg
            msg.sent_at = now
            msg.sent_on = stream
            batch.append(msg.frame)
        if batch:  # one write: one Yamux frame and one Noise message for the whole batch
            await stream.write(b"".join(batch))
        if not ch.inflight:
            return
        oldest = next(iter(ch.inflight.values()))
        deadline = oldest.sent_at + self.config.ack_timeout
        # A relative wait: ``sent_at`` is time.monotonic(), and trio's clock (move_on_at) runs
        # hours apart from it, which made every wait end at once and the worker spin while
        # messages were in flight, taking the CPU from the tasks reading their acks.
        with trio.move_on_after(max(0.0, deadline - time.monotonic())):
            await ch.wait_change()
        if stream.broken:
            raise _AttemptFailed("stream closed before acknowledgement")
        if oldest.msg_id in ch.inflight and time.monotonic() >= deadline:
            raise _AttemptFailed(f"no acknowledgement within {self.config.ack_timeout:g} s")

    async def _open(self, ch: _Channel) -> _Stream:
        if not self.host.get_network().get_connections(ch.peer):
            compat.forget_dial_failure(self.host, ch.peer)
        with trio.fail_after(self.config.open_timeout):
            raw = await self.host.new_stream(ch.peer, [TProtocol(ch.protocol)])
        stream = _Stream(raw)
        self._adopt(ch, stream)
        return stream

    def _adopt(self, ch: _Channel, stream: _Stream) -> None:
        assert self._nursery is not None
        ch.stream = stream
        ch.unreachable = False
        self._streams.add(stream)
        self._nursery.start_soon(self._read_loop, ch, stream)

    async def _after_failure(self, ch: _Channel, reason: str) -> None:
        """Give up the stream this attempt used — not a newer one the peer opened meanwhile —
        and charge the attempt to the messages it carried."""
        for failed_stream in {m.sent_on for m in ch.inflight.values() if m.sent_on is not None}:
            if ch.stream is failed_stream:
                ch.stream = None
            await failed_stream.reset()
        if ch.stream is not None and ch.stream.broken:
            ch.stream = None
        retry = list(ch.inflight.values())
        ch.inflight.clear()
        ch.pending.extendleft(reversed(retry))
        charged = retry or ([ch.pending[0]] if ch.pending else [])
        for msg in charged:
            msg.attempts += 1
        failed = [m for m in charged if m.attempts >= self.config.attempts]
        if failed:
            log.info(
                "direct %s %s: %d message(s) failed: %s", ch.peer, ch.protocol, len(failed), reason
            )
            for msg in failed:
                ch.pending.remove(msg)
                self._resolve(msg, False, f"not delivered after {msg.attempts} attempts: {reason}")
            self._fail_followers(ch, reason)
            ch.unreachable = True
            return
        tries = max(m.attempts for m in charged)
        delay = self.config.backoff[min(tries - 1, len(self.config.backoff) - 1)]
        log.debug(
            "direct %s %s: attempt %d failed (%s); retry in %g s",
            ch.peer,
            ch.protocol,
            tries,
            reason,
            delay,
        )
        with trio.move_on_after(delay):
            await ch.wait_change()  # a reconnect (peer_seen) cuts the backoff short

    def _fail_followers(self, ch: _Channel, reason: str) -> None:
        """An earlier message failed: the ones queued behind it fail with it, in order, so the
        peer never gets a later message without an earlier one (issue 13). Messages queued
        after this point wait for the peer as usual."""
        while ch.pending:
            msg = ch.pending.popleft()
            self._resolve(msg, False, f"not delivered: an earlier message failed ({reason})")

    async def _wait_reachable(self, ch: _Channel) -> None:
        """Hold messages for an unreachable peer, probing it, until it is back or they expire."""
        now = time.monotonic()
        if ch.pending and now - ch.pending[0].queued_at >= self.config.patience:
            self._fail_followers(ch, "peer unreachable")
        if not ch.pending:
            return
        if self.host.get_network().get_connections(ch.peer):
            ch.unreachable = False
            return
        with trio.move_on_after(self.config.probe_interval):
            await ch.wait_change()
        if ch.unreachable:
            try:
                addrs = compat.known_addrs(self.host, ch.peer)
                compat.forget_dial_failure(self.host, ch.peer)
                with trio.fail_after(self.config.open_timeout):
                    await self.host.connect(PeerInfo(ch.peer, addrs))
                ch.unreachable = False
            except Exception as exc:
                log.debug("probe of %s failed: %s", ch.peer, exc)

    # -- receiving ----------------------------------------------------------------------------

    async def _on_inbound_stream(self, raw: INetStream) -> None:
        protocol = str(raw.get_protocol())
        ch = self._channel(raw.muxed_conn.peer_id, protocol)
        stream = _Stream(raw)
        ch.stream = stream  # the newest stream from the peer replaces ours (wire-protocol §3)
        ch.unreachable = False
        self._streams.add(stream)
        ch.poke()
        await self._read_loop(ch, stream)

    async def _read_loop(self, ch: _Channel, stream: _Stream) -> None:
        budget, readers = self._budgets.get(ch.peer, (None, 0))
        if budget is None:
            budget = FrameBudget(self.config.peer_frame_budget)
        self._budgets[ch.peer] = budget, readers + 1  # shared by all the peer's streams
        reader = FrameReader(
            stream.raw,
            self.config.max_frame,
            body_timeout=self.config.frame_body_timeout,
            budget=budget,
        )
        acks: list[bytes] = []
        try:
            while True:
                frame = await reader.next()
                stream.last_activity = time.monotonic()
                ack = self._on_frame(ch, frame)
                if ack is not None:
                    acks.append(ack)
                if acks and not reader.frame_ready():
                    # Every frame that came in one read is answered in one write.
                    await stream.write(b"".join(acks))
                    acks.clear()
        except StreamClosed:
            pass
        except FrameError as exc:
            # Reset, not close: a closed stream would go on buffering what the peer still sends.
            log.warning("direct %s %s: resetting stream: %s", ch.peer, ch.protocol, exc)
            await stream.reset()
        except Exception as exc:  # a write of an ack to a dying connection, among others
            log.debug("direct %s %s: stream ended: %r", ch.peer, ch.protocol, exc)
        finally:
            _, readers = self._budgets[ch.peer]
            if readers > 1:
                self._budgets[ch.peer] = budget, readers - 1
            else:
                del self._budgets[ch.peer]
            self._streams.discard(stream)
            if not stream.broken:
                await stream.close()
            if ch.stream is stream:
                ch.stream = None
            ch.poke()

    def _on_frame(self, ch: _Channel, frame: bytes) -> bytes | None:
        """Handle one inbound frame; return the ack frame to send for it, if any."""
        try:
            obj = decode_json_object(frame)
        except FrameError as exc:
            log.warning("direct %s %s: dropped malformed frame: %s", ch.peer, ch.protocol, exc)
            return None
        kind = obj.get("type")
        if kind == "ack":
            self._on_ack(ch, obj.get("id"))
        elif kind == "data":
            return self._on_data(ch, obj)
        else:
            log.warning(
                "direct %s %s: dropped frame of unknown type %r", ch.peer, ch.protocol, kind
            )
        return None

    def _on_ack(self, ch: _Channel, msg_id: Any) -> None:
        msg = ch.inflight.pop(msg_id, None) if isinstance(msg_id, str) else None
        if msg is None:
            return
        self._resolve(msg, True)
        ch.poke()

    def _on_data(self, ch: _Channel, obj: dict[str, Any]) -> bytes | None:
        """Deliver a data frame (once, even if re-sent) and return its ack; None if dropped."""
        msg_id, payload = obj.get("id"), obj.get("data")
        if not isinstance(msg_id, str) or not isinstance(payload, str):
            log.warning("direct %s %s: dropped data frame without id/data", ch.peer, ch.protocol)
            return None
        if not msg_id or len(msg_id) > MAX_ID:
            # Ids are remembered for duplicate suppression: unbounded ones would let a peer
            # fill our memory. Go's are ~30 characters.
            log.warning(
                "direct %s %s: dropped data frame with a %d-character id",
                ch.peer,
                ch.protocol,
                len(msg_id),
            )
            return None
        if ch.protocol not in self.started:
            log.warning(
                "direct %s: dropped data on protocol %s, which is not started", ch.peer, ch.protocol
            )
            return None
        ch.touched = time.monotonic()
        if msg_id not in ch.recent_ids:
            try:
                value = loads(base64.b64decode(payload, validate=True))
            except (binascii.Error, ValueError) as exc:
                log.warning("direct %s %s: dropped non-JSON data: %s", ch.peer, ch.protocol, exc)
                return None
            ch.recent_ids[msg_id] = None
            if len(ch.recent_ids) > self.config.dedup_memory:
                ch.recent_ids.popitem(last=False)
            self.emit(PeerData(str(ch.peer), ch.protocol, value))
        if ch.unreachable:  # data from the peer proves it is back
            ch.unreachable = False
            ch.poke()
        return encode_frame(dumps({"type": "ack", "id": msg_id}))

    # -- housekeeping -------------------------------------------------------------------------

    async def _idle_reaper(self) -> None:
        while True:
            await trio.sleep(self.config.idle_check)
            now = time.monotonic()
            for key, ch in list(self._channels.items()):
                stream = ch.stream
                if (
                    stream is not None
                    and not ch.inflight
                    and not ch.pending
                    and now - stream.last_activity >= self.config.idle_timeout
                ):
                    ch.stream = None
                if (
                    ch.stream is None
                    and not ch.inflight
                    and not ch.pending
                    and not ch.worker_running
                    and now - ch.touched >= 2 * self.config.idle_timeout
                ):
                    del self._channels[key]  # its duplicate memory goes with it
            for stream in list(self._streams):
                if now - stream.last_activity >= self.config.idle_timeout and not any(
                    ch.stream is stream for ch in self._channels.values()
                ):
                    self._streams.discard(stream)
                    await stream.close()


class _AttemptFailed(Exception):
    pass
