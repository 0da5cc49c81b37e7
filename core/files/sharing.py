"""Files between peers: our tree served over ``/p2p-webapp/1.0.0`` and bitswap, other peers'
trees listed, content fetched by CID — local blocks first, then bitswap from connected peers,
then the fallback peer — and verified against the CID before it is used or cached.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID

from core.events import EventSink, FilesChanged, GotFile, PeerFiles, Progress
from core.files.blockstore import BlockStore, Session
from core.files.blockstore import Session as StoreSession
from core.files.fileproto import (
    MAX_FILE_CONTENT,
    Answer,
    FileProtocolError,
    FileService,
    StreamedContent,
)
from core.files.filetree import Cancel, FileTree, FileTreeError, Source, directory_links
from core.files.paths import PathError
from core.ipfs import dagpb, unixfs
from core.ipfs.bitswap import DEFAULT_ESTIMATE, Bitswap
from core.profile.identity import parse_peer_id

log = logging.getLogger(__name__)

BITSWAP_TIMEOUT = 30.0
BITSWAP_TIMEOUT_WITH_FALLBACK = 5.0
MAX_BLOCK_ESTIMATE = 2 * 1024 * 1024
KEEP_FETCHED = 200
SERVE_LIMIT = MAX_FILE_CONTENT * 3 // 4 - 64 * 1024

_ops = itertools.count(1)


class FetchError(Exception):
    pass


class _FetchGuard:
    """One block-store session, open while any fetch runs: blocks that arrive (by bitswap or
    from a fallback peer) are garbage-collection roots until the fetch has pinned its result,
    so a GC triggered meanwhile by an unrelated change cannot take them away."""

    def __init__(self, store: BlockStore) -> None:
        self.store = store
        self.session: Session | None = None
        self._users = 0
        self._context: Any = None

    def __enter__(self) -> _FetchGuard:
        if self._users == 0:
            self._context = self.store.session()
            self.session = self._context.__enter__()
        self._users += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._users -= 1
        if self._users == 0:
            self.session = None
            self._context.__exit__(None, None, None)

    def put(self, cid: bytes, data: bytes, links: list[bytes]) -> None:
        (self.session or self.store).put(cid, data, links)


def _decoded(cid: bytes, data: bytes) -> dagpb.PBNode | None:
    """The dag-pb node of a block, None for any other codec or a block that does not parse."""
    try:
        if dagpb.cid_parts(cid).codec != dagpb.DAG_PB:
            return None
        return dagpb.PBNode.decode(data)
    except ValueError:
        return None


def _node_links(cid: bytes, data: bytes) -> list[dagpb.Link]:
    node = _decoded(cid, data)
    return node.links if node is not None else []


def _links(cid: bytes, data: bytes) -> list[bytes]:
    return [link.cid for link in _node_links(cid, data)]


class _FetchMeter:
    """How far one fetch got, counted at the DAG walk as its blocks arrive: the file bytes
    each leaf carries (a raw block whole, a dag-pb leaf its UnixFS data), so ``done`` ends at
    the file's size; ``total`` is that size, read from the root node (its filesize, else its
    blocksizes) once the root block is here, 0 while unknown and for folders. Written by the
    worker thread that accepts blocks, read on the trio thread between batches."""

    def __init__(self, root: bytes) -> None:
        self.root = root
        self.done = 0
        self.total = 0

    def measure_root(self, get: unixfs.GetBlock) -> None:
        """The total from a root block we already hold (an earlier, interrupted fetch)."""
        try:
            self.total = unixfs.file_size(get, self.root)
        except (unixfs.UnixFSError, LookupError, ValueError):
            self.total = 0  # not here yet, or not a file: unknown

    def arrived(self, cid: bytes, data: bytes, node: dagpb.PBNode | None) -> None:
        if node is None:  # raw leaf (or not dag-pb at all: its bytes are its content)
            self.done += len(data)
            if cid == self.root:
                self.total = len(data)
            return
        if node.links and cid != self.root:
            return  # an inner node: its leaves carry the bytes
        try:
            info = unixfs.UnixFSData.decode(node.data or b"")
        except unixfs.UnixFSError:
            return
        if info.type not in (unixfs.DataType.FILE, unixfs.DataType.RAW):
            return
        own = len(info.data or b"")
        self.done += own
        if cid == self.root:
            self.total = info.filesize if info.filesize is not None else own + sum(info.blocksizes)


def _estimate(link: dagpb.Link) -> int:
    """A link's Tsize is its whole subtree: the block's own size for a leaf."""
    return min(link.tsize or DEFAULT_ESTIMATE, MAX_BLOCK_ESTIMATE)


def _is_identity(cid: bytes) -> bool:
    try:
        return dagpb.cid_parts(cid).hash_code == dagpb.IDENTITY
    except ValueError:
        return False


def _same_content(a: bytes, b: bytes) -> bool:
    """Same hash of the same bytes: a CIDv0 and a CIDv1 of one block name the same thing."""
    pa, pb = dagpb.cid_parts(a), dagpb.cid_parts(b)
    return (pa.hash_code, pa.digest, pa.codec) == (pb.hash_code, pb.digest, pb.codec)


class Files:
    def __init__(
        self, host: IHost, store: BlockStore, emit: EventSink, notify: Callable[[], Awaitable[None]]
    ) -> None:
        self.host = host
        self.store = store
        self.emit = emit
        self.notify = notify
        self.tree = FileTree(store)
        self.service = FileService(host, self.tree.listing, self._serve_content)
        self._guard = _FetchGuard(store)
        self.bitswap = Bitswap(host, store.get, store.has)
        self._listing_pending: dict[str, trio.Event] = {}
        self._remote_entries: OrderedDict[bytes, dict[str, str]] = OrderedDict()
        self._fetched: OrderedDict[bytes, None] = OrderedDict(
            (dagpb.parse_cid(name.split(":", 1)[1]), None)
            for name in store.roots()
            if name.startswith("fetched:")
        )
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.service.start()
            await nursery.start(self.bitswap.run)
            task_status.started()

    # -- our tree -----------------------------------------------------------------------------

    async def store_file(
        self,
        path: str,
        source: Source,
        *,
        total: int = 0,
        cancel: Cancel | None = None,
        op: str = "",
    ) -> tuple[str, str]:
        """Progress events carry ``op`` (made up here unless the caller names it)."""
        op = op or f"store:{next(_ops)}:{path}"
        token = trio.lowlevel.current_trio_token()

        def progress(done: int) -> None:  # importer thread
            token.run_sync_soon(self.emit, Progress(op, done, total))

        try:
            result = await self.tree.store_file(path, source, progress=progress, cancel=cancel)
        finally:
            self.emit(Progress(op, total, total, finished=True))
        await self._changed()
        return result

    async def mkdir(self, path: str) -> tuple[str, str]:
        result = await self.tree.mkdir(path)
        await self._changed()
        return result

    async def remove(self, path: str) -> str:
        root = await self.tree.remove(path)
        await self._changed()
        return root

    async def restore(self, root: str) -> None:
        await self.tree.restore(root)
        self.emit(FilesChanged(self.tree.root))

    async def _changed(self) -> None:
        self.emit(FilesChanged(self.tree.root))
        await self.bitswap.recheck_missing()
        try:
            await self.notify()
        except Exception as exc:
            log.warning("file update notice not published: %s", exc)

    # -- listing ------------------------------------------------------------------------------

    def list_files(self, peer: str) -> None:
        """Ask for a listing; the answer arrives as a PeerFiles event. A request already
        pending for that peer is not repeated."""
        if peer in self._listing_pending:
            return
        done = self._listing_pending[peer] = trio.Event()
        assert self._nursery is not None
        self._nursery.start_soon(self._list_files, peer, done)

    async def _list_files(self, peer: str, done: trio.Event) -> None:
        try:
            if peer == str(self.host.get_id()):
                listing = await self.tree.listing()
            else:
                listing = await self.service.request_list(parse_peer_id(peer))
            self.emit(PeerFiles(peer, listing["cid"], _clean_entries(listing["entries"])))
        except (FileProtocolError, ValueError, OSError, LookupError) as exc:
            self.emit(PeerFiles(peer, "", {}, error=str(exc)))
        except Exception as exc:  # never let a listing take the peer down
            log.exception("listing the files of %s failed", peer)
            self.emit(PeerFiles(peer, "", {}, error=f"{type(exc).__name__}: {exc}"))
        finally:
            del self._listing_pending[peer]
            done.set()

    # -- getting ------------------------------------------------------------------------------

    def get_file(self, cid: str, fallback: str = "") -> None:
        """Fetch and answer with a GotFile event in p2p-webapp's content shape, in the
        background (p2p-webapp's fire-and-forget ``getFile``)."""
        assert self._nursery is not None
        self._nursery.start_soon(self.answer_get, cid, fallback)

    async def answer_get(
        self, cid: str, fallback: str = "", op: str = "", *, inline: bool = True
    ) -> None:
        """What ``get_file`` does, under the caller: cancelling the caller cancels the fetch
        (the desktop's Stop button). Progress events carry ``op``. ``inline`` False: a file's
        answer carries its ``size`` instead of its bytes in base64 (the desktop then saves
        it with ``save``, streamed from the fetched blocks, never whole in memory)."""
        try:
            key = dagpb.parse_cid(cid)
            await self.fetch(key, fallback, op)
            content = await trio.to_thread.run_sync(self._gotfile_content, key, inline)
            self.emit(GotFile(cid, True, content))
        except (FetchError, ValueError, LookupError, FileTreeError) as exc:
            self.emit(GotFile(cid, False, {"error": str(exc)}))
        except Exception as exc:  # never let one request take the peer down
            log.exception("getting %s failed", cid)
            self.emit(GotFile(cid, False, {"error": f"{type(exc).__name__}: {exc}"}))

    def _gotfile_content(self, cid: bytes, inline: bool = True) -> dict[str, Any]:
        get = self.store.get
        if unixfs.node_kind(get, cid) in ("hamt", "directory"):
            try:
                entries = {
                    n: dagpb.cid_str(link.cid) for n, link in directory_links(get, cid).items()
                }
            except unixfs.MissingBlock:
                # A sharded folder from a fallback peer: we hold its root block, not its
                # sub-shards; its immediate entries came with the answer.
                if cid not in self._remote_entries:
                    raise
                entries = dict(self._remote_entries[cid])
            return {"type": "directory", "entries": entries}
        if not inline:
            size = unixfs.file_size(get, cid)
            return {"type": "file", "mimeType": self.tree.mime_of(cid), "size": size}
        return {
            "type": "file",
            "mimeType": self.tree.mime_of(cid),
            "content": base64.b64encode(b"".join(self.tree.read(cid))).decode(),
        }

    async def fetch(self, cid: bytes, fallback: str = "", op: str = "") -> None:
        """Make the whole DAG of ``cid`` local (and keep it pinned among recent fetches)."""
        if await trio.to_thread.run_sync(self._complete, cid):
            return
        with self._guard:
            await self._fetch_guarded(cid, fallback, op)

    async def _fetch_guarded(self, cid: bytes, fallback: str, op: str) -> None:
        peers = [p for p in self.host.get_connected_peers() if str(p) != fallback]
        if peers:
            timeout = BITSWAP_TIMEOUT_WITH_FALLBACK if fallback else BITSWAP_TIMEOUT
            if await self._fetch_bitswap(cid, timeout, op):
                await self._keep(cid)
                return
        if fallback:
            await self._fetch_fallback(cid, parse_peer_id(fallback), op)
            await self._keep(cid)
            return
        raise FetchError(f"{dagpb.cid_str(cid)} is not stored here and no peer provided it")

    async def save(self, cid: str, dest: Path, fallback: str = "", op: str = "") -> int:
        """Fetch if needed, then stream the file to ``dest`` (written beside it and renamed, so
        a failure never leaves half a file under the real name). Returns the bytes written."""
        key = dagpb.parse_cid(cid)
        await self.fetch(key, fallback, op=op)
        return await trio.to_thread.run_sync(self._save_sync, key, dest)

    def _save_sync(self, cid: bytes, dest: Path) -> int:
        tmp = dest.with_name(f".{dest.name}.peerdesk-part")
        written = 0
        try:
            with tmp.open("wb") as fh:
                for chunk in self.tree.read(cid):
                    fh.write(chunk)
                    written += len(chunk)
            tmp.replace(dest)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise FetchError(f"could not write {dest}: {exc.strerror}") from exc
        return written

    def _complete(self, cid: bytes) -> bool:
        return not self._missing([(cid, DEFAULT_ESTIMATE)])

    def _missing(self, cids: list[tuple[bytes, int]]) -> list[tuple[bytes, int]]:
        """Blocks still to fetch below ``cids`` (themselves included), each with a size
        estimate. Identity CIDs carry their block: it is stored as it is, and what it links
        to is looked at in turn."""
        out: list[tuple[bytes, int]] = []
        stack = list(cids)
        seen: set[bytes] = set()
        while stack:
            cid, estimate = stack.pop()
            for missing in self.store.missing(cid):
                if missing in seen:
                    continue
                seen.add(missing)
                if not _is_identity(missing):
                    out.append((missing, estimate if missing == cid else DEFAULT_ESTIMATE))
                    continue
                data = dagpb.cid_parts(missing).digest
                links = _node_links(missing, data)
                self._guard.put(missing, data, [link.cid for link in links])
                stack += [(link.cid, _estimate(link)) for link in links]
        return out

    def _accept(
        self, meter: _FetchMeter, blocks: list[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, int]]:
        """Worker thread: store blocks bitswap verified, count them on ``meter``, return what
        is missing below them."""
        below: list[tuple[bytes, int]] = []
        assert self._guard.session is not None  # fetch() holds the guard
        with self._guard.session.batch() as batch:
            for cid, data in blocks:
                node = _decoded(cid, data)
                links = node.links if node is not None else []
                batch.put(cid, data, [link.cid for link in links])
                below += [(link.cid, _estimate(link)) for link in links]
                meter.arrived(cid, data, node)
        return self._missing(below)

    async def _fetch_bitswap(self, cid: bytes, timeout: float, op: str = "") -> bool:
        """Progress events carry the file bytes fetched so far and, once the root block is
        here, the file's size (a get by CID knows no size before that)."""
        op = op or f"fetch:{next(_ops)}:{dagpb.cid_str(cid)}"
        meter = _FetchMeter(cid)

        def progress(_block_bytes: int) -> None:
            self.emit(Progress(op, meter.done, meter.total))

        def missing_below() -> list[tuple[bytes, int]]:
            meter.measure_root(self.store.get)
            return self._missing([(cid, DEFAULT_ESTIMATE)])

        try:
            missing = await trio.to_thread.run_sync(missing_below)
            if meter.total:
                self.emit(Progress(op, 0, meter.total))
            return await self.bitswap.fetch(
                missing, partial(self._accept, meter), timeout=timeout, progress=progress
            )
        except Exception as exc:
            log.info("bitswap fetch of %s failed: %s", dagpb.cid_str(cid), exc)
            return False
        finally:
            self.emit(Progress(op, meter.done, meter.total or meter.done, finished=True))

    async def _fetch_fallback(self, cid: bytes, peer: ID, op: str = "") -> None:
        """The answer is one frame: its size is reported once, when it is in and verified."""
        try:
            reply = await self.service.request_content(peer, dagpb.cid_str(cid))
        except FileProtocolError as exc:
            raise FetchError(str(exc)) from exc
        if "error" in reply:
            raise FetchError(f"{peer} could not provide it: {reply['error']}")
        size = await trio.to_thread.run_sync(self._accept_fallback, cid, reply)
        if op:
            self.emit(Progress(op, size, size, finished=True))

    def _accept_fallback(self, cid: bytes, reply: dict[str, Any]) -> int:
        """Returns the file bytes the answer brought (0 for a folder)."""
        """Trust nothing the fallback peer says that the CID cannot confirm."""
        try:
            raw = base64.b64decode(reply.get("rawNode", ""), validate=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise FetchError("the fallback peer's answer has no valid rawNode") from exc
        if not dagpb.verify(cid, raw):
            raise FetchError("the fallback peer's answer does not match the CID (tampered?)")
        if reply.get("isDirectory"):
            self._guard.put(cid, raw, _links(cid, raw))
            entries = reply.get("entries")
            if isinstance(entries, dict):
                self._remote_entries[cid] = {
                    str(name): value
                    for name, value in entries.items()
                    if isinstance(value, str) and "/" not in str(name)
                }
                while len(self._remote_entries) > KEEP_FETCHED:
                    self._remote_entries.popitem(last=False)
            return 0
        try:
            content = base64.b64decode(reply.get("content", ""), validate=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise FetchError("the fallback peer's answer has no valid content") from exc
        # Rebuild the DAG from the content: it must hash to the CID we asked for, which both
        # proves the content and gives us every block, not only the root.
        blocks: list[tuple[bytes, bytes, list[bytes]]] = []
        result = unixfs.import_file([content], lambda c, d, ln: blocks.append((c, d, ln)))
        if not _same_content(result.cid, cid):
            raise FetchError("the fallback peer's content does not match the CID (tampered?)")
        assert self._guard.session is not None  # fetch() holds the guard
        with self._guard.session.batch() as batch:
            for c, d, ln in blocks:
                batch.put(c, d, ln)
            if result.cid != cid:  # same DAG under another CID version: keep the asked one too
                batch.put(cid, raw, _links(cid, raw))
        return len(content)

    async def _keep(self, cid: bytes) -> None:
        """Pin what we fetched so garbage collection leaves it, up to the newest few hundred."""

        def keep() -> None:
            self.store.set_root(f"fetched:{dagpb.cid_str(cid)}", cid)
            self._fetched[cid] = None
            self._fetched.move_to_end(cid)
            while len(self._fetched) > KEEP_FETCHED:
                old, _ = self._fetched.popitem(last=False)
                self.store.set_root(f"fetched:{dagpb.cid_str(old)}", None)

        await trio.to_thread.run_sync(keep)

    # -- serving ------------------------------------------------------------------------------

    @asynccontextmanager
    async def _serve_content(self, cid: str) -> AsyncIterator[Answer]:
        """The FileContent answer for ``cid``; a file's is streamed from its blocks, which a
        store session keeps from garbage collection until the answer has gone out (holding
        the tree's lock that long would let a slow reader stall every change of the tree)."""
        try:
            key = dagpb.parse_cid(cid)
        except ValueError as exc:
            yield {"cid": cid, "error": f"invalid CID: {exc}"}
            return
        with self.store.session() as session:
            yield await trio.to_thread.run_sync(self._serve_content_sync, cid, key, session)

    def _serve_content_sync(self, cid: str, key: bytes, session: StoreSession) -> Answer:
        try:
            raw = self.store.get(key) if self._complete(key) else None
            if raw is None:
                return {"cid": cid, "error": "not found"}
            # Written again through the session (a no-op for the stored block), it becomes a
            # GC root with all it links to: complete after that, the DAG stays complete.
            session.put(key, raw, _links(key, raw))
            if not self._complete(key):  # a change collected some of it in between
                return {"cid": cid, "error": "not found"}
            if unixfs.node_kind(self.store.get, key) in ("hamt", "directory"):
                return self.tree.content_sync(key)
            size = unixfs.file_size(self.store.get, key)
            if size > SERVE_LIMIT:
                return {"cid": cid, "error": "file too large for this protocol; use bitswap"}
            fields = {
                "cid": dagpb.cid_str(key),
                "rawNode": base64.b64encode(raw).decode(),
                "isDirectory": False,
                "mimeType": self.tree.mime_of(key),
            }
            return StreamedContent(fields, size, self.tree.read(key))
        except (unixfs.UnixFSError, ValueError, LookupError) as exc:
            return {"cid": cid, "error": str(exc)}


def _clean_entries(entries: Any) -> dict[str, dict[str, str]]:
    """A remote listing is untrusted input: keep well-formed entries only."""
    out: dict[str, dict[str, str]] = {}
    if not isinstance(entries, dict):
        return out
    for path, entry in entries.items():
        if not isinstance(path, str) or not isinstance(entry, dict):
            continue
        kind, cid = entry.get("type"), entry.get("cid")
        if kind not in ("file", "directory") or not isinstance(cid, str):
            continue
        clean: dict[str, Any] = {"type": kind, "cid": cid}
        if kind == "file" and isinstance(entry.get("mimeType"), str):
            clean["mimeType"] = entry["mimeType"]
        size = entry.get("size")  # Peerdesk peers send it; Go peers do not
        if kind == "file" and type(size) is int and 0 <= size < 1 << 63:
            clean["size"] = size
        out[path] = clean
    return out


__all__ = ["Cancel", "FetchError", "Files", "PathError"]
