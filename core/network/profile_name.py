"""``/peerdesk/profile/1.0.0``: the display name a peer chose, asked for on connect.

Other libp2p programs (p2p-webapp, kubo, js-libp2p) do not speak this protocol and are not
bothered by it: a peer that does not offer it fails the protocol negotiation and simply keeps
the name derived from its id. So the wire stays compatible, and the name travels only
between peers that want it.

The exchange, one per stream: the asker sends one frame (4-byte big-endian length + a JSON
object, ``{}`` today, room for more later), the answerer one frame ``{"name": "…"}`` and
closes. Everything about it is bounded because the other side may be hostile:

- frames of at most ``MAX_FRAME`` bytes, ``TIMEOUT`` seconds per exchange;
- questions we ask: ``ASKERS`` at a time, at most ``MAX_QUEUED`` peers waiting their turn
  (a burst of connections past that is not asked; such a peer is asked when it connects
  again), one question per peer and none again within ``ASK_AGAIN`` seconds;
- questions we answer: ``HANDLING`` streams at a time in all, ``PER_PEER`` per peer, and per
  peer ``BURST`` answers then one every ``REFILL`` seconds (an honest peer asks once per
  connection); a stream past any of these is reset at once, before anything is read;
- at most ``MAX_NAMES`` names (and peers' answer allowances) remembered; a name that is not a
  string is ignored, and control and bidirectional-override characters are removed and the
  rest cut to ``MAX_NAME`` characters (a name must not be able to fake other text on screen).
"""

from __future__ import annotations

import logging
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from core.network.framing import (
    FrameError,
    decode_json_object,
    dumps,
    encode_frame,
    read_frame,
    reset_quietly,
)

log = logging.getLogger(__name__)

PROTOCOL = TProtocol("/peerdesk/profile/1.0.0")
MAX_FRAME = 1024
MAX_NAME = 64
TIMEOUT = 5.0
ASKERS = 4
MAX_QUEUED = 256
ASK_AGAIN = 30.0
HANDLING = 32
PER_PEER = 2
BURST = 6
REFILL = 10.0
MAX_NAMES = 1024


def clean_name(value: object) -> str:
    """What we show of a name another peer sent: a string, without control, format (bidi
    overrides, zero-width) or line characters, spaces collapsed, at most ``MAX_NAME``."""
    if not isinstance(value, str):
        return ""
    kept = "".join(
        " " if ch.isspace() else ch
        for ch in value[: MAX_NAME * 4]
        if ch.isspace() or unicodedata.category(ch)[0] != "C"
    )
    return " ".join(kept.split())[:MAX_NAME].strip()


class _Allowance:
    """A peer's answers: ``BURST`` at once, then one more every ``REFILL`` seconds."""

    __slots__ = ("at", "tokens")

    def __init__(self, now: float) -> None:
        self.tokens = float(BURST)
        self.at = now

    def take(self, now: float) -> bool:
        self.tokens = min(float(BURST), self.tokens + (now - self.at) / REFILL)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.at) / REFILL >= BURST


class ProfileNames:
    """Answers with our name; asks each newly connected peer for its own."""

    def __init__(self, host: IHost, own_name: Callable[[], str]) -> None:
        """``own_name()`` is read at each answer, so a new name needs no restart here."""
        self.host = host
        self.own_name = own_name
        self.names: OrderedDict[str, str] = OrderedDict()
        self._asking: set[ID] = set()
        """Peers waiting for a question or being asked (at most ASKERS + MAX_QUEUED)."""
        self._asked: dict[ID, float] = {}
        self._queue, self._turns = trio.open_memory_channel[ID](MAX_QUEUED)
        self._handling: dict[ID, int] = {}
        """Streams being answered, per peer (HANDLING in all)."""
        self._allowances: dict[ID, _Allowance] = {}
        self._nursery: trio.Nursery | None = None
        self.refused = 0
        """Questions reset unanswered because a limit was reached (for tests and logs)."""

    def name_of(self, peer: str) -> str:
        return self.names.get(peer, "")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.host.set_stream_handler(PROTOCOL, self._handle)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for _ in range(ASKERS):
                nursery.start_soon(self._asker)
            task_status.started()
            await trio.sleep_forever()

    @property
    def asking(self) -> int:
        """Questions waiting or in flight."""
        return len(self._asking)

    def connected(self, peer: ID) -> None:
        """A new connection: ask the peer for its name (in the background, at most once per
        ``ASK_AGAIN`` seconds, so a peer reconnecting in a loop costs us little; past
        ``MAX_QUEUED`` waiting peers, not at all this time)."""
        now = time.monotonic()
        if self._nursery is None or peer in self._asking:
            return
        if now - self._asked.get(peer, -ASK_AGAIN) < ASK_AGAIN:
            return
        try:
            self._queue.send_nowait(peer)
        except trio.WouldBlock:
            log.debug("not asking %s for its name: %d peers already wait", peer, MAX_QUEUED)
            return
        if len(self._asked) > MAX_NAMES:
            self._asked = {p: t for p, t in self._asked.items() if now - t < ASK_AGAIN}
        self._asked[peer] = now
        self._asking.add(peer)

    async def _asker(self) -> None:
        async for peer in self._turns:
            try:
                await self._ask_and_keep(peer)
            finally:
                self._asking.discard(peer)

    async def _ask_and_keep(self, peer: ID) -> None:
        if peer not in self.host.get_connected_peers():
            self._asked.pop(peer, None)  # gone while it waited: ask when it is back
            return
        try:
            name = await self.ask(peer)
        except Exception as exc:  # not a Peerdesk peer, gone, or misbehaving: keep its id
            log.debug("no profile name from %s: %s", peer, exc)
            return
        self._remember(str(peer), name)

    def _remember(self, peer: str, name: str) -> None:
        """Kept after the peer leaves (an offline contact keeps its name), newest last."""
        if not name:
            self.names.pop(peer, None)
            return
        self.names[peer] = name
        self.names.move_to_end(peer)
        while len(self.names) > MAX_NAMES:
            self.names.popitem(last=False)

    async def ask(self, peer: ID) -> str:
        """The peer's chosen name ("" if it chose none). Raises on any failure."""
        stream = None
        try:
            with trio.fail_after(TIMEOUT):
                stream = await self.host.new_stream(peer, [PROTOCOL])
                await stream.write(encode_frame(dumps({})))
                answer = decode_json_object(await read_frame(stream, MAX_FRAME))
            return clean_name(answer.get("name"))
        finally:
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await reset_quietly(stream)

    def _admit(self, peer: ID) -> bool:
        """Whether a question from ``peer`` may be answered now (and count it if so)."""
        if sum(self._handling.values()) >= HANDLING or self._handling.get(peer, 0) >= PER_PEER:
            return False
        now = time.monotonic()
        allowance = self._allowances.get(peer)
        if allowance is None:
            if len(self._allowances) >= MAX_NAMES:  # forget peers that have their full burst
                self._allowances = {p: a for p, a in self._allowances.items() if not a.full(now)}
                if len(self._allowances) >= MAX_NAMES:
                    return False
            allowance = self._allowances[peer] = _Allowance(now)
        if not allowance.take(now):
            return False
        self._handling[peer] = self._handling.get(peer, 0) + 1
        return True

    async def _handle(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        if not self._admit(peer):
            self.refused += 1
            log.debug("profile request from %s refused: over its limits", peer)
            await reset_quietly(stream)
            return
        try:
            with trio.fail_after(TIMEOUT):
                decode_json_object(await read_frame(stream, MAX_FRAME))
                name = clean_name(self.own_name())
                await stream.write(encode_frame(dumps({"name": name})))
                await stream.close()
        except (FrameError, trio.TooSlowError) as exc:
            log.info("profile request from %s refused: %s", peer, exc)
            await reset_quietly(stream)
        except Exception:
            log.debug("answering %s's profile request failed", peer, exc_info=True)
            await reset_quietly(stream)
        finally:
            left = self._handling.pop(peer) - 1
            if left:
                self._handling[peer] = left
