"""Bitswap 1.2.0 (with 1.1.0 / 1.0.0 peers served too), our own engine over py-libp2p streams.

Serving, as go (boxo) and js (Helia) peers expect: every message we send goes on a stream we
open to the peer (theirs are closed for reading), blocks carry the right CID prefix, a
WANT-HAVE gets HAVE, answered from the store's cheap ``has`` without reading the block
(an identity CID's block, held in the CID itself, is sent in place of HAVE when under 1 KiB),
DONT_HAVE goes out when it was asked for. Each peer's ledger is capped (``MAX_WANTS_PER_PEER``,
``MAX_ENTRIES_PER_MESSAGE``, ``MAX_STREAMS_PER_PEER``, ``MAX_MESSAGE``), answered by one task
per peer in messages of about ``MESSAGE_BLOCK_BYTES``, and dropped when the peer disconnects.

Fetching: a DAG is fetched with no fixed waits. WANT-HAVE goes to every connected peer until
some say HAVE; then WANT-BLOCKs are spread over the peers known to have that block, else over
every peer known to have blocks of this DAG (least bytes in flight first, then the one known
to hold the fewest: the peer that has everything is everybody's last choice), many at once,
bounded by ``INFLIGHT_BYTES`` in all and ``PEER_INFLIGHT_BYTES`` per peer. The other peers of
the DAG are asked WANT-HAVE for each block, and keep that want until they get the block (as
boxo and Helia do), so the peers fetching the same file at once learn what each other has and
serve each other; sibling blocks are asked for in random order, so they hold different ones.
DONT_HAVE moves a want to another peer at once; when every peer said DONT_HAVE the fetch fails
at once. Only
blocks we asked for are accepted (unsolicited ones are dropped, never stored), and every block
is checked against its hash before the caller stores it.
"""

from __future__ import annotations

import logging
import math
import random
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork
from libp2p.peer.id import ID

from core.ipfs import bitswap_wire as wire
from core.ipfs.dagpb import DAG_PB, IDENTITY, SHA2_256, DagPBError, cid_parts
from core.libp2p_compat import (
    BITSWAP_110,
    BITSWAP_120,
    BITSWAP_PROTOCOLS,
    PRESENCE_DONT_HAVE,
    PRESENCE_HAVE,
    WANT_BLOCK,
    WANT_HAVE,
    BitswapMessage,
    ConnectionNotifee,
)
from core.network.framing import reset_quietly

log = logging.getLogger(__name__)

BLOCK_IN_PLACE_OF_HAVE = 1024
"""A WANT-HAVE for a block smaller than this gets the block (as boxo and Helia do) when we know
its size without reading it: identity CIDs only, as ``has`` tells presence, not size."""
MAX_WANTS_PER_PEER = 1024
MAX_ENTRIES_PER_MESSAGE = 4096
"""Wantlist entries looked at per message; the rest of a huge list is ignored."""
MAX_STREAMS_PER_PEER = 64
MESSAGE_BLOCK_BYTES = 1024 * 1024
STREAM_IDLE = 2.0
"""Our stream to a peer is reused only this soon after the last write: Helia drops a bitswap
stream after 10 s without a message, and a write into a dropped stream is lost silently."""
READ_IDLE = 60.0
WRITE_TIMEOUT = 20.0

INFLIGHT_BYTES = 16 * 1024 * 1024
INFLIGHT_BLOCKS = 512
PEER_INFLIGHT_BYTES = 1024 * 1024
"""Block bytes asked of one peer at a time. Without it the first peer that has a DAG is asked
for all of it at once, and a swarm fetching one file at the same moment all download it from
that one peer; with it the rest waits until others say HAVE (or the first answers)."""
DISCOVER_KEYS = 256
"""Blocks one peer is asked WANT-HAVE about at a time, to learn who else has them."""
DEFAULT_ESTIMATE = 256 * 1024
UNUSABLE_FOR = 30.0
STALL = 3.0
"""No answer at all for this long: ask everybody again (peers may have joined meanwhile)."""

_Answer = tuple[list[tuple[bytes, bytes]], list[tuple[bytes, int]]]
"""Blocks (CID, data) and presences (CID, HAVE / DONT_HAVE) for one message to a peer."""

_Found = bytes | bool | None
"""What the store said for one want: the block, True (held, not read: a WANT-HAVE) or None."""

Accept = Callable[[list[tuple[bytes, bytes]]], list[tuple[bytes, int]]]
"""Stores verified blocks (in a worker thread) and returns the CIDs still missing below them,
each with an estimate of its size."""


@dataclass
class _Want:
    cid: bytes
    block: bool
    dont_have: bool
    missing: bool = False
    """We do not have it (DONT_HAVE sent if asked): skipped until the block arrives here."""


@dataclass
class _PeerState:
    peer: ID
    wants: OrderedDict[bytes, _Want] = field(default_factory=OrderedDict)
    wake: trio.Event = field(default_factory=trio.Event)
    lock: trio.Lock = field(default_factory=trio.Lock)
    stream: INetStream | None = None
    protocol: str = ""
    last_write: float = 0.0
    inbound: int = 0
    serving: bool = False
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    unusable_until: float = 0.0
    """Opening a bitswap stream to the peer failed (it does not speak bitswap, or is going):
    fetches leave it out until then."""


class Bitswap:
    def __init__(
        self,
        host: IHost,
        get_block: Callable[[bytes], bytes | None],
        has_block: Callable[[bytes], bool],
    ) -> None:
        self.host = host
        self.get_block = get_block
        """Reads a block: for WANT-BLOCKs."""
        self.has_block = has_block
        """Whether a block is stored, without reading it: for WANT-HAVEs and rechecks."""
        self._peers: dict[ID, _PeerState] = {}
        self._wanted: dict[bytes, set[_Fetch]] = {}
        self._nursery: trio.Nursery | None = None
        self.unsolicited = 0
        """Blocks that arrived without being asked for (dropped)."""
        self.blocks_sent = 0
        self.bytes_sent = 0
        """Block bytes served to other peers (how much of a swarm's fetches we carried)."""
        self.duplicate_bytes = 0
        """Block bytes that came after the same block had come from another peer."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for protocol in BITSWAP_PROTOCOLS:
                self.host.set_stream_handler(protocol, self._handle_stream)
            self.host.get_network().register_notifee(
                ConnectionNotifee(disconnected=self._on_disconnected)
            )
            task_status.started()
            await trio.sleep_forever()

    def ledger_size(self, peer: ID) -> int:
        state = self._peers.get(peer)
        return len(state.wants) if state else 0

    def tracked_peers(self) -> set[ID]:
        """Peers we hold any state for (ledger, stream): only connected ones."""
        return set(self._peers)

    def _state(self, peer: ID) -> _PeerState:
        state = self._peers.get(peer)
        if state is None:
            state = self._peers[peer] = _PeerState(peer)
        return state

    def _on_disconnected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        if not network.get_connections(peer):
            self._peer_gone(peer)

    def _peer_gone(self, peer: ID) -> None:
        state = self._peers.pop(peer, None)
        if state is not None:
            state.scope.cancel()
            state.wants.clear()
            if state.stream is not None and self._nursery is not None:
                self._nursery.start_soon(_close_quietly, state.stream)
        for fetch in set().union(*self._wanted.values()):
            fetch.post(("gone", peer, b"", b""))

    # -- receiving -----------------------------------------------------------------------

    async def _handle_stream(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        if not self.host.get_network().get_connections(peer):
            await reset_quietly(stream)  # already gone: keep no state for it
            return
        state = self._state(peer)
        if state.inbound >= MAX_STREAMS_PER_PEER:
            await reset_quietly(stream)
            return
        state.inbound += 1
        reader = wire.MessageReader(stream)
        try:
            while True:
                with trio.move_on_after(READ_IDLE):
                    body = await reader.next()
                    self._on_message(peer, wire.decode(body))
                    continue
                break
        except wire.StreamGone:
            pass
        except wire.WireError as exc:
            log.info("bitswap: dropping a stream from %s: %s", peer, exc)
            await reset_quietly(stream)
        except Exception:
            log.exception("bitswap: message from %s failed", peer)
            await reset_quietly(stream)
        finally:
            state.inbound -= 1
        await _close_quietly(stream)

    def _on_message(self, peer: ID, message: BitswapMessage) -> None:
        for payload in message.payload:
            self._on_block(peer, payload.prefix, payload.data)
        for data in message.blocks:  # 1.0.0: CIDv0 sha2-256 blocks, no prefix
            self._on_block(peer, b"", data)
        for presence in message.blockPresences:
            try:
                key = wire.multihash_key(bytes(presence.cid))
            except DagPBError:
                continue
            kind = "have" if presence.type == PRESENCE_HAVE else "dont"
            for fetch in self._wanted.get(key, ()):
                fetch.post((kind, peer, key, b""))
        if message.HasField("wantlist") and peer in self.host.get_connected_peers():
            self._add_wants(self._state(peer), message.wantlist)

    def _on_block(self, peer: ID, prefix: bytes, data: bytes) -> None:
        try:
            key = wire.block_key(data, wire.prefix_hash_code(prefix))
        except DagPBError:
            return  # a hash we cannot compute: we never asked for it
        fetches = self._wanted.get(key)
        if not fetches:
            self.unsolicited += 1
            return
        for fetch in fetches:
            if key not in fetch.done:  # a repeat of a block we hold is not queued again
                fetch.post(("block", peer, key, data))

    # -- serving -------------------------------------------------------------------------

    def _add_wants(self, state: _PeerState, wantlist: Any) -> None:
        wants = state.wants
        if wantlist.full:
            wants.clear()
        changed = False
        for entry in wantlist.entries[:MAX_ENTRIES_PER_MESSAGE]:
            cid = bytes(entry.block)
            if entry.cancel:
                wants.pop(cid, None)
                continue
            want_block = entry.wantType == WANT_BLOCK
            known = wants.get(cid)
            if known is not None:
                known.block = known.block or want_block
                known.dont_have = entry.sendDontHave
                known.missing = False
                changed = True
                continue
            if len(wants) >= MAX_WANTS_PER_PEER:
                for old in [c for c, w in wants.items() if w.missing]:
                    del wants[old]
                if len(wants) >= MAX_WANTS_PER_PEER:
                    break  # full of wants we are still answering: the rest are dropped
            try:
                cid_parts(cid)
            except DagPBError:
                continue
            wants[cid] = _Want(cid, want_block, entry.sendDontHave)
            changed = True
        if changed:
            state.wake.set()
            if not state.serving and self._nursery is not None:
                state.serving = True
                self._nursery.start_soon(self._serve, state)

    def blocks_added(self, cids: list[bytes]) -> None:
        """Blocks arrived here: peers that wanted them and heard DONT_HAVE get them now."""
        for state in self._peers.values():
            for cid in cids:
                want = state.wants.get(cid)
                if want is not None and want.missing:
                    want.missing = False
                    state.wake.set()

    async def recheck_missing(self) -> None:
        """Our own tree changed (a file stored, a folder made): wants we answered with
        DONT_HAVE may be served now. boxo and Helia keep such a want open and take the block
        whenever it comes, so a peer that asked before we imported still gets it. Bounded by
        the ledgers' caps; the lookups run in a worker thread."""
        missing = [
            (state, want)
            for state in list(self._peers.values())
            for want in state.wants.values()
            if want.missing
        ]
        if not missing:
            return
        found = await trio.to_thread.run_sync(lambda: [self._has(want.cid) for _, want in missing])
        for (state, want), have in zip(missing, found, strict=True):
            if have and want.missing and state.wants.get(want.cid) is want:
                want.missing = False
                state.wake.set()

    async def _serve(self, state: _PeerState) -> None:
        """Answers the peer's ledger; the next message is read from the store while the
        previous one is being written (at most one waits in between)."""
        to_send, outbox = trio.open_memory_channel[_Answer](0)
        try:
            with state.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._sender, state, outbox)
                    while True:
                        await state.wake.wait()
                        state.wake = trio.Event()
                        while todo := [w for w in state.wants.values() if not w.missing]:
                            found = await trio.to_thread.run_sync(self._collect, todo)
                            blocks, presences = self._answers(state, found)
                            if blocks or presences:
                                await to_send.send((blocks, presences))
        except Exception:  # e.g. the store closing under us: this peer's answers end, not us
            log.exception("bitswap: serving %s failed", state.peer)
            state.wants.clear()
        finally:
            state.serving = False

    def _answers(self, state: _PeerState, found: list[tuple[_Want, _Found]]) -> _Answer:
        blocks: list[tuple[bytes, bytes]] = []
        presences: list[tuple[bytes, int]] = []
        for want, data in found:
            if state.wants.get(want.cid) is not want:
                continue  # cancelled meanwhile
            if data is None:
                want.missing = True
                if want.dont_have:
                    presences.append((want.cid, PRESENCE_DONT_HAVE))
                continue
            if isinstance(data, bytes) and (want.block or len(data) < BLOCK_IN_PLACE_OF_HAVE):
                blocks.append((want.cid, data))
            else:
                presences.append((want.cid, PRESENCE_HAVE))
            del state.wants[want.cid]
        return blocks, presences

    async def _sender(self, state: _PeerState, outbox: trio.MemoryReceiveChannel[_Answer]) -> None:
        async for blocks, presences in outbox:
            if await self._send(state, blocks=blocks, presences=presences):
                self.blocks_sent += len(blocks)
                self.bytes_sent += sum(len(data) for _, data in blocks)
            else:
                state.wants.clear()  # the peer does not take our messages

    def _collect(self, wants: list[_Want]) -> list[tuple[_Want, _Found]]:
        """Worker thread: the blocks for the first wants, up to about one message of data; a
        WANT-HAVE only asks the store whether it has the block (True), never reads it."""
        out: list[tuple[_Want, _Found]] = []
        size = 0
        for want in wants:
            data: _Found
            if want.block:
                data = self._lookup(want.cid)
            else:
                data = self._inline(want.cid)
                if data is None:
                    data = True if self._has(want.cid) else None
            out.append((want, data))
            if isinstance(data, bytes) and (want.block or len(data) < BLOCK_IN_PLACE_OF_HAVE):
                size += len(data)
                if size >= MESSAGE_BLOCK_BYTES:
                    break
        return out

    @staticmethod
    def _inline(cid: bytes) -> bytes | None:
        """An identity CID's block (its digest), known without the store."""
        try:
            parts = cid_parts(cid)
        except DagPBError:
            return None
        return parts.digest if parts.hash_code == IDENTITY else None

    def _has(self, cid: bytes) -> bool:
        """Whether we hold the block (also as its CIDv0 / v1 twin), without reading it."""
        try:
            parts = cid_parts(cid)
        except DagPBError:
            return False
        if parts.hash_code == IDENTITY or self.has_block(cid):
            return True
        if parts.codec == DAG_PB and parts.hash_code == SHA2_256:
            return self.has_block(cid[2:] if parts.version == 1 else b"\x01\x70" + cid)
        return False

    def _lookup(self, cid: bytes) -> bytes | None:
        try:
            parts = cid_parts(cid)
        except DagPBError:
            return None
        if parts.hash_code == IDENTITY:
            return parts.digest
        data = self.get_block(cid)
        if data is None and parts.codec == DAG_PB and parts.hash_code == SHA2_256:
            other = (
                cid[2:] if parts.version == 1 else b"\x01\x70" + cid
            )  # the same block, v0 <-> v1
            data = self.get_block(other)
        return data

    # -- sending -------------------------------------------------------------------------

    async def _send(
        self,
        state: _PeerState,
        *,
        blocks: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
        presences: list[tuple[bytes, int]] = (),  # type: ignore[assignment]
        entries: list[tuple[bytes, bool, bool, bool]] = (),  # type: ignore[assignment]
    ) -> bool:
        """One message on our own stream to the peer; a stale or broken stream is replaced
        once. ``entries`` are (cid, want block?, cancel?, send DONT_HAVE?)."""
        async with state.lock:
            for _attempt in range(2):
                stream = await self._stream(state)
                if stream is None:
                    return False
                data = wire.encode(_message(state.protocol, blocks, presences, entries))
                try:
                    with trio.fail_after(WRITE_TIMEOUT):
                        await stream.write(data)
                    state.last_write = trio.current_time()
                    return True
                except Exception as exc:
                    log.debug("bitswap: write to %s failed: %s", state.peer, exc)
                    state.stream = None
                    await reset_quietly(stream)
            return False

    async def _stream(self, state: _PeerState) -> INetStream | None:
        now = trio.current_time()
        if state.stream is not None and now - state.last_write < STREAM_IDLE:
            return state.stream
        if state.stream is not None:
            old, state.stream = state.stream, None
            assert self._nursery is not None
            self._nursery.start_soon(_close_quietly, old)
        try:
            with trio.fail_after(WRITE_TIMEOUT):
                stream = await self.host.new_stream(state.peer, list(BITSWAP_PROTOCOLS))
        except Exception as exc:
            log.debug("bitswap: no stream to %s: %s", state.peer, exc)
            state.unusable_until = trio.current_time() + UNUSABLE_FOR
            return None
        state.unusable_until = 0.0
        state.stream = stream
        state.protocol = str(stream.get_protocol() or BITSWAP_120)
        state.last_write = now
        return stream

    # -- fetching ------------------------------------------------------------------------

    def _presences(self, peer: ID) -> bool:
        """Whether the peer answers HAVE / DONT_HAVE (1.2.0; assumed until a stream says)."""
        state = self._peers.get(peer)
        return state is None or not state.protocol or state.protocol == BITSWAP_120

    def _bitswap_peers(self) -> list[ID]:
        out = []
        for peer in self.host.get_connected_peers():
            state = self._peers.get(peer)
            if state is None or state.unusable_until <= trio.current_time():
                out.append(peer)
        return out

    async def fetch(
        self,
        missing: list[tuple[bytes, int]],
        accept: Accept,
        *,
        timeout: float,
        progress: Callable[[int], None],
    ) -> bool:
        """Fetch ``missing`` and everything ``accept`` reports missing below what arrives.

        Returns False when no peer has some block, or nothing arrived for ``timeout``."""
        fetch = _Fetch(self, accept, timeout, progress)
        try:
            return await fetch.run(missing)
        finally:
            await fetch.close()

    def _register(self, key: bytes, fetch: _Fetch) -> None:
        self._wanted.setdefault(key, set()).add(fetch)

    def _unregister(self, key: bytes, fetch: _Fetch) -> None:
        fetches = self._wanted.get(key)
        if fetches is not None:
            fetches.discard(fetch)
            if not fetches:
                del self._wanted[key]


class _Fetch:
    """One DAG being fetched: what is wanted, from whom, and what is in flight."""

    def __init__(
        self, engine: Bitswap, accept: Accept, timeout: float, progress: Callable[[int], None]
    ) -> None:
        self.engine = engine
        self.accept = accept
        self.timeout = timeout
        self.progress = progress
        self._send, self._recv = trio.open_memory_channel[tuple[str, ID, bytes, bytes]](math.inf)
        self.cids: dict[bytes, bytes] = {}  # key -> the CID asked for
        self.done: set[bytes] = set()
        self.estimate: dict[bytes, int] = {}
        self.pending: deque[bytes] = deque()
        self.inflight: dict[bytes, ID] = {}
        self.waiting: set[bytes] = set()  # asked who has it; no answer yet
        self.lacks: dict[bytes, set[ID]] = {}
        self.asked_have: dict[bytes, set[ID]] = {}
        self.asked: dict[ID, set[bytes]] = {}  # for the cancels at the end
        self.session: list[ID] = []
        self.load: dict[ID, int] = {}
        self.holders: dict[bytes, set[ID]] = {}
        """Who said HAVE (or sent the block): WANT-BLOCKs go to them first."""
        self.held: dict[ID, int] = {}
        self.discovering: dict[ID, set[bytes]] = {}
        self.arrived_keys: list[bytes] = []
        """Blocks in since the last round of wants: the others asked for them get a cancel
        (a peer that said DONT_HAVE keeps the want, and would send the block when it gets it)."""
        """Keys each session peer was asked WANT-HAVE about, to learn whether it holds them."""
        self.inflight_bytes = 0
        self.failed = False
        self.resend = False

    def post(self, event: tuple[str, ID, bytes, bytes]) -> None:
        self._send.send_nowait(event)

    def _want(self, items: list[tuple[bytes, int]]) -> None:
        items = list(items)
        random.shuffle(items)  # peers fetching the same DAG at once start on different blocks
        for cid, estimate in items:
            try:
                key = wire.multihash_key(cid)
            except DagPBError:
                continue
            if key in self.cids:
                continue
            self.cids[key] = cid
            self.estimate[key] = max(1, min(estimate or DEFAULT_ESTIMATE, 4 * 1024 * 1024))
            self.pending.append(key)
            self.engine._register(key, self)

    async def run(self, missing: list[tuple[bytes, int]]) -> bool:
        self._want(missing)
        last_progress = trio.current_time()
        while self._unfinished():
            self.resend = True
            while self.resend:  # again at once if a peer could not be sent its wants
                self.resend = False
                await self._assign()
            if self.failed:
                return False
            if not self._unfinished():
                break
            events = []
            with trio.move_on_after(STALL):
                events.append(await self._recv.receive())
            while True:
                try:
                    events.append(self._recv.receive_nowait())
                except trio.WouldBlock:
                    break
            if not events:
                if trio.current_time() - last_progress > self.timeout:
                    return False
                self._stalled()
                continue
            arrived = self._handle(events)
            if arrived:
                last_progress = trio.current_time()
                new = await trio.to_thread.run_sync(self.accept, arrived)
                self.engine.blocks_added([cid for cid, _ in arrived])
                self.progress(sum(len(d) for _, d in arrived))
                self._want(new)
        return True

    def _unfinished(self) -> bool:
        return len(self.done) < len(self.cids)

    def _handle(self, events: list[tuple[str, ID, bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        arrived: list[tuple[bytes, bytes]] = []
        for kind, peer, key, data in events:
            if kind == "gone":
                self.session = [p for p in self.session if p != peer]
                for k, p in list(self.inflight.items()):
                    if p == peer:
                        self._release(k)
                        self.pending.appendleft(k)
                continue
            if kind in ("block", "have") and key in self.cids:
                if peer not in self.session:
                    self.session.append(peer)  # it has blocks of this DAG: ask it for more
                holders = self.holders.setdefault(key, set())
                if peer not in holders:
                    holders.add(peer)
                    self.held[peer] = self.held.get(peer, 0) + 1
                self.lacks.get(key, set()).discard(peer)
            if key not in self.cids or key in self.done:
                if kind == "block" and key in self.cids:
                    self.engine.duplicate_bytes += len(data)
                continue  # done already (a late duplicate)
            if kind == "block":
                self.done.add(key)  # still registered: a late HAVE adds its sender
                for keys in self.discovering.values():
                    keys.discard(key)
                self.arrived_keys.append(key)
                self._release(key)
                self.waiting.discard(key)
                self.asked.get(peer, set()).discard(key)
                arrived.append((self.cids[key], data))
            elif kind == "have":
                if key in self.waiting:
                    self.waiting.discard(key)
                    self.pending.appendleft(key)
            else:  # DONT_HAVE (its want stays there: cancelled when the block comes)
                self.lacks.setdefault(key, set()).add(peer)
                if self.inflight.get(key) == peer:
                    self._release(key)
                    self.pending.appendleft(key)
                elif key in self.waiting:
                    self.waiting.discard(key)
                    self.pending.appendleft(key)  # re-evaluated: maybe nobody has it
        return arrived

    def _release(self, key: bytes) -> None:
        peer = self.inflight.pop(key, None)
        if peer is not None:
            size = self.estimate.get(key, DEFAULT_ESTIMATE)
            self.inflight_bytes -= size
            self.load[peer] = self.load.get(peer, 0) - size

    def _stalled(self) -> None:
        """Nothing for a while: forget who was asked, so everybody connected is asked again."""
        for key in list(self.inflight):
            self._release(key)
            self.pending.appendleft(key)
        for key in self.waiting:
            self.pending.append(key)
        self.waiting.clear()
        self.asked_have.clear()
        self.lacks.clear()
        self.discovering.clear()  # and who has what is asked again

    async def _assign(self) -> None:
        out: dict[ID, list[tuple[bytes, bool, bool, bool]]] = {}
        connected = self.engine._bitswap_peers()
        live = set(connected)
        self.session = [p for p in self.session if p in live]
        if len(self.session) > 1:  # rarest first: what only one peer has goes to it
            self.pending = deque(
                sorted(self.pending, key=lambda k: len(self.holders.get(k, ())) or math.inf)
            )
        deferred: list[bytes] = []
        while (
            self.pending
            and self.inflight_bytes < INFLIGHT_BYTES
            and len(self.inflight) < INFLIGHT_BLOCKS
            and len(self.waiting) < INFLIGHT_BLOCKS
        ):
            key = self.pending.popleft()
            if key in self.done:
                continue
            cid = self.cids[key]
            lacks = self.lacks.get(key, set())
            candidates = [p for p in self.session if p not in lacks]
            if candidates:
                peer = self._pick(key, candidates)
                if peer is None:
                    deferred.append(key)  # every peer that may have it is busy: wait
                    continue
                size = self.estimate[key]
                self.inflight[key] = peer
                self.inflight_bytes += size
                self.load[peer] = self.load.get(peer, 0) + size
                out.setdefault(peer, []).append((cid, True, False, True))
                self.asked.setdefault(peer, set()).add(key)
                continue
            asked = self.asked_have.setdefault(key, set())
            targets = [p for p in connected if p not in lacks and p not in asked]
            if targets:
                for peer in targets:
                    out.setdefault(peer, []).append((cid, False, False, True))
                    self.asked.setdefault(peer, set()).add(key)
                asked.update(targets)
                self.waiting.add(key)
            elif asked - lacks:
                self.waiting.add(key)  # answers still to come
            elif self.session or connected or self.engine.host.get_connected_peers():
                self.failed = True  # every peer said DONT_HAVE, or speaks no bitswap
                return
            else:
                deferred.append(key)  # nobody connected: wait (bounded by the timeout)
        self.pending.extendleft(reversed(deferred))
        self._cancel_arrived(out)
        self._discover(out)
        async with trio.open_nursery() as nursery:  # a slow peer does not hold up the others
            for peer, entries in out.items():
                nursery.start_soon(self._send_wants, peer, entries)

    def _pick(self, key: bytes, candidates: list[ID]) -> ID | None:
        """The peer to ask for ``key``: one that said it has it, else any of the DAG's peers
        that cannot say (an old peer); below its share of bytes in flight; the one known to hold
        the fewest blocks (a peer with everything is left to what nobody else has), then the
        least loaded."""
        holders = self.holders.get(key, set())
        # A 1.2.0 peer is asked WANT-HAVE first (``_discover``), never for a block blindly: it
        # keeps a want it cannot answer and sends the block when it gets it, by then a
        # duplicate. Older peers cannot say HAVE, so they are asked for the block itself.
        blind = [p for p in candidates if p not in holders and not self.engine._presences(p)]
        for pool in ([p for p in candidates if p in holders], blind):
            open_ = [p for p in pool if self.load.get(p, 0) < PEER_INFLIGHT_BYTES]
            if open_:
                return min(open_, key=lambda p: (self.held.get(p, 0), self.load.get(p, 0)))
        return None

    def _cancel_arrived(self, out: dict[ID, list[tuple[bytes, bool, bool, bool]]]) -> None:
        arrived, self.arrived_keys = self.arrived_keys, []
        for peer, keys in self.asked.items():
            for key in arrived:
                if key in keys:
                    keys.discard(key)
                    out.setdefault(peer, []).append((self.cids[key], False, True, False))

    def _discover(self, out: dict[ID, list[tuple[bytes, bool, bool, bool]]]) -> None:
        """Ask each peer of the DAG WANT-HAVE about the blocks still to come that it has not
        been asked about (a bounded number at a time): it answers HAVE now or when it gets one,
        and so becomes a place to fetch that block from."""
        todo = [k for k in self.cids if k not in self.done]
        for peer in self.session:
            asked = self.discovering.setdefault(peer, set())
            room = DISCOVER_KEYS - len(asked)
            if room <= 0:
                continue
            for key in todo:
                if room <= 0:
                    break
                if key in asked or peer in self.holders.get(key, ()):
                    continue
                if self.inflight.get(key) == peer or peer in self.lacks.get(key, ()):
                    continue
                asked.add(key)
                room -= 1
                out.setdefault(peer, []).append((self.cids[key], False, False, True))
                self.asked.setdefault(peer, set()).add(key)

    async def _send_wants(self, peer: ID, entries: list[tuple[bytes, bool, bool, bool]]) -> None:
        if await self.engine._send(self.engine._state(peer), entries=entries):
            return
        self.resend = True
        for cid, *_ in entries:  # as if the peer had said DONT_HAVE to each
            key = wire.multihash_key(cid)
            self.lacks.setdefault(key, set()).add(peer)
            if self.inflight.get(key) == peer:
                self._release(key)
                self.pending.appendleft(key)
            elif key in self.waiting and not (self.asked_have.get(key, set()) - self.lacks[key]):
                self.waiting.discard(key)
                self.pending.appendleft(key)

    async def close(self) -> None:
        for key in self.cids:
            self.engine._unregister(key, self)
        cancels = {peer: keys for peer, keys in self.asked.items() if keys}
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            for peer, keys in cancels.items():
                state = self.engine._peers.get(peer)
                if state is None:
                    continue
                entries = [(self.cids[k], False, True, False) for k in keys]
                if entries:
                    await self.engine._send(state, entries=entries)


def _message(
    protocol: str,
    blocks: Any,
    presences: Any,
    entries: Any,
) -> BitswapMessage:
    """A message in the form the peer's protocol version understands."""
    message = BitswapMessage()
    legacy = protocol not in (BITSWAP_120, BITSWAP_110)
    for cid, data in blocks:
        if legacy:
            message.blocks.append(data)
        else:
            message.payload.add(prefix=wire.prefix(cid), data=data)
    if protocol == BITSWAP_120:
        for cid, kind in presences:
            message.blockPresences.add(cid=cid, type=kind)
    if entries:
        wantlist = message.wantlist
        for cid, want_block, cancel, dont_have in entries:
            entry = wantlist.entries.add(block=cid, priority=1, cancel=cancel)
            if protocol == BITSWAP_120:
                entry.wantType = WANT_BLOCK if want_block else WANT_HAVE
                entry.sendDontHave = dont_have
    return message


async def _close_quietly(stream: INetStream) -> None:
    try:
        with trio.move_on_after(2):
            await stream.close()
    except Exception:
        pass
