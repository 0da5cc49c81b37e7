"""``/peerdesk/profile/1.0.0``: the display name a peer chose, asked for on connect.

Other libp2p programs (p2p-webapp, kubo, js-libp2p) do not speak this protocol and are not
bothered by it: a peer that does not offer it fails the protocol negotiation and simply keeps
the name derived from its id. So the wire stays compatible, and the name travels only
between peers that want it.

The exchange, one per stream: the asker sends one frame (4-byte big-endian length + a JSON
object, ``{}`` today, room for more later), the answerer one frame ``{"name": "…"}`` and
closes. Everything about it is bounded because the other side may be hostile: frames of at
most ``MAX_FRAME`` bytes, ``TIMEOUT`` seconds per exchange, ``ANSWERS`` answers at a time,
one question per peer in flight and none again within ``ASK_AGAIN`` seconds, at most
``MAX_NAMES`` names remembered; a name that is not a string is ignored, and control and
bidirectional-override characters are removed and the rest cut to ``MAX_NAME`` characters
(a name must not be able to fake other text on screen).
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
ANSWERS = 8
ASK_AGAIN = 30.0
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


class ProfileNames:
    """Answers with our name; asks each newly connected peer for its own."""

    def __init__(self, host: IHost, own_name: Callable[[], str]) -> None:
        """``own_name()`` is read at each answer, so a new name needs no restart here."""
        self.host = host
        self.own_name = own_name
        self.names: OrderedDict[str, str] = OrderedDict()
        self._answers = trio.CapacityLimiter(ANSWERS)
        self._asking: set[ID] = set()
        self._asked: dict[ID, float] = {}
        self._nursery: trio.Nursery | None = None

    def name_of(self, peer: str) -> str:
        return self.names.get(peer, "")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.host.set_stream_handler(PROTOCOL, self._handle)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def connected(self, peer: ID) -> None:
        """A new connection: ask the peer for its name (in the background, at most once per
        ``ASK_AGAIN`` seconds, so a peer reconnecting in a loop costs us little)."""
        now = time.monotonic()
        if self._nursery is None or peer in self._asking:
            return
        if now - self._asked.get(peer, -ASK_AGAIN) < ASK_AGAIN:
            return
        if len(self._asked) > MAX_NAMES:
            self._asked = {p: t for p, t in self._asked.items() if now - t < ASK_AGAIN}
        self._asked[peer] = now
        self._asking.add(peer)
        self._nursery.start_soon(self._ask_and_keep, peer)

    async def _ask_and_keep(self, peer: ID) -> None:
        try:
            name = await self.ask(peer)
        except Exception as exc:  # not a Peerdesk peer, gone, or misbehaving: keep its id
            log.debug("no profile name from %s: %s", peer, exc)
            return
        finally:
            self._asking.discard(peer)
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

    async def _handle(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        try:
            with trio.fail_after(TIMEOUT):
                decode_json_object(await read_frame(stream, MAX_FRAME))
                async with self._answers:
                    name = clean_name(self.own_name())
                    await stream.write(encode_frame(dumps({"name": name})))
                await stream.close()
        except (FrameError, trio.TooSlowError) as exc:
            log.info("profile request from %s refused: %s", peer, exc)
            await reset_quietly(stream)
        except Exception:
            log.debug("answering %s's profile request failed", peer, exc_info=True)
            await reset_quietly(stream)
