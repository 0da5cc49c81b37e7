"""The peer's own file tree: a UnixFS HAMT directory over the persistent block store.

Every mutation runs in a worker thread (hashing and SQLite must not stall the network loop),
one at a time, and ends by switching the pinned root in one transaction: a crash at any moment
leaves the previous root with all its blocks. Blocks nothing reachable still references —
superseded files and directory versions — are collected right after each change.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import trio

from core.files.blockstore import BlockStore
from core.files.mime import detect_content_type
from core.files.paths import PathError, join_path, split_path
from core.ipfs import dagpb, unixfs
from core.ipfs.hamt import HamtDirectory

log = logging.getLogger(__name__)

ROOT_PIN = "files"
SNIFF_BYTES = 512

Source = bytes | Path | BinaryIO
Progress = Callable[[int], None]


class FileTreeError(Exception):
    pass


@dataclass(frozen=True)
class Entry:
    path: str
    kind: str  # "file" | "directory"
    cid: str
    size: int
    mime: str = ""

    def wire(self) -> dict[str, str | int]:
        """The FileList entry shape of p2p-webapp, plus a file's ``size`` (UnixFS filesize,
        in bytes). Go decodes entries into a struct, so the extra field is ignored there.
        Folders carry none: their link's Tsize counts block bytes, not file bytes."""
        if self.kind == "directory":
            return {"type": "directory", "cid": self.cid}
        return {"type": "file", "cid": self.cid, "mimeType": self.mime, "size": self.size}


class Cancel:
    """A flag the GUI flips from its side; the importer polls it between chunks."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()


class FileTree:
    def __init__(self, store: BlockStore, pin: str = ROOT_PIN) -> None:
        self.store = store
        self.pin = pin
        self.lock = trio.Lock()
        self._mime: dict[bytes, str] = {}
        self._listing: tuple[bytes, dict[str, Entry]] | None = None
        root = store.get_root(pin)
        if root is None:
            root, _ = HamtDirectory.empty(store.get).flush(self.store.put)
            store.set_root(pin, root)
        self._root = root

    @property
    def root(self) -> str:
        return dagpb.cid_str(self._root)

    # -- mutations ----------------------------------------------------------------------------

    async def store_file(
        self,
        path: str,
        source: Source,
        *,
        progress: Progress | None = None,
        cancel: Cancel | None = None,
    ) -> tuple[str, str]:
        """Import ``source`` at ``path`` (replacing what is there, creating missing folders);
        returns (file CID, new root CID)."""
        parts = split_path(path)
        async with self.lock:
            file_cid = await trio.to_thread.run_sync(
                self._store_file_sync, parts, source, progress, cancel, abandon_on_cancel=False
            )
        return dagpb.cid_str(file_cid), self.root

    async def mkdir(self, path: str) -> tuple[str, str]:
        parts = split_path(path)
        async with self.lock:
            dir_cid = await trio.to_thread.run_sync(self._mkdir_sync, parts)
        return dagpb.cid_str(dir_cid), self.root

    async def remove(self, path: str) -> str:
        parts = split_path(path)
        async with self.lock:
            await trio.to_thread.run_sync(self._remove_sync, parts)
        return self.root

    async def restore(self, root: str) -> None:
        """Adopt an existing tree (p2p-webapp's ``rootDirectory``): it must be complete here."""
        cid = dagpb.parse_cid(root)
        async with self.lock:
            await trio.to_thread.run_sync(self._restore_sync, cid)

    def _store_file_sync(
        self, parts: list[str], source: Source, progress: Progress | None, cancel: Cancel | None
    ) -> bytes:
        """Import, then link the file in. Collected afterwards whatever happened: a
        cancelled or failed import leaves committed blocks that nothing references (a
        cancelled 1.6 GB import used to hold ~730 MB until the next change)."""
        try:
            with self.store.session() as session:
                with session.batch() as batch:
                    with _open_source(source) as stream:
                        result = unixfs.import_file(
                            stream, batch.put_owned, progress=progress, cancelled=cancel
                        )
                self._update(
                    session,
                    parts[:-1],
                    lambda d: d.set(parts[-1], result.cid, result.tsize),
                    create=True,
                )
        finally:
            self._collect()
        return result.cid

    def _mkdir_sync(self, parts: list[str]) -> bytes:
        with self.store.session() as session:
            existing = self._resolve(parts)
            if existing is not None:
                if unixfs.node_kind(self.store.get, existing) != "hamt":
                    raise FileTreeError(f"{join_path(parts)} exists and is not a folder")
                return existing
            empty, tsize = HamtDirectory.empty(self.store.get).flush(session.put)
            self._update(session, parts[:-1], lambda d: d.set(parts[-1], empty, tsize), create=True)
        self._collect()
        return empty

    def _remove_sync(self, parts: list[str]) -> None:
        with self.store.session() as session:

            def remove(d: HamtDirectory) -> None:
                if not d.remove(parts[-1]):
                    raise FileTreeError(f"{join_path(parts)} does not exist")

            self._update(session, parts[:-1], remove, create=False)
        self._collect()

    def _restore_sync(self, cid: bytes) -> None:
        if unixfs.node_kind(self.store.get, cid) != "hamt":
            raise FileTreeError("the root directory must be a UnixFS HAMT directory")
        missing = self.store.missing(cid)
        if missing:
            raise FileTreeError(f"{len(missing)} block(s) of that tree are not stored here")
        self.store.set_root(self.pin, cid)
        self._root = cid
        self._collect()

    def _update(
        self,
        session: Any,
        parents: list[str],
        change: Callable[[HamtDirectory], None],
        *,
        create: bool,
    ) -> None:
        """Apply ``change`` to the folder at ``parents`` and rewrite the chain of folders above
        it, then switch the pinned root — the one moment the new tree becomes visible."""
        chain = [HamtDirectory.load(self.store.get, self._root)]
        for depth, name in enumerate(parents):
            link = chain[-1].lookup(name)
            if link is None:
                if not create:
                    raise FileTreeError(f"{join_path(parents[: depth + 1])} does not exist")
                chain.append(HamtDirectory.empty(self.store.get))
                continue
            if unixfs.node_kind(self.store.get, link.cid) != "hamt":
                raise FileTreeError(f"{join_path(parents[: depth + 1])} is a file, not a folder")
            chain.append(HamtDirectory.load(self.store.get, link.cid))
        change(chain[-1])
        cid, tsize = chain[-1].flush(session.put)
        for name, parent in zip(reversed(parents), reversed(chain[:-1]), strict=True):
            parent.set(name, cid, tsize)
            cid, tsize = parent.flush(session.put)
        self.store.set_root(self.pin, cid)
        self._root = cid

    def _collect(self) -> None:
        try:
            stats = self.store.gc()
        except Exception as exc:  # the tree is already consistent; GC can wait for next time
            log.warning("garbage collection failed: %s", exc)
            return
        if stats.blocks:
            log.debug("collected %d blocks (%d bytes)", stats.blocks, stats.bytes)

    def _resolve(self, parts: list[str]) -> bytes | None:
        cid = self._root
        for name in parts:
            if unixfs.node_kind(self.store.get, cid) != "hamt":
                return None
            link = HamtDirectory.load(self.store.get, cid).lookup(name)
            if link is None:
                return None
            cid = link.cid
        return cid

    # -- reading ------------------------------------------------------------------------------

    async def entries(self) -> dict[str, Entry]:
        """Every file and folder, by path from the root; cached per root."""
        async with self.lock:  # a change meanwhile would collect blocks the walk still reads
            root = self._root
            if self._listing is not None and self._listing[0] == root:
                return self._listing[1]
            entries = await trio.to_thread.run_sync(self._walk_sync, root)
            self._listing = (root, entries)
            return entries

    async def listing(self) -> dict[str, Any]:
        """The FileList message body (wire-protocol.md §4)."""
        entries = await self.entries()
        root = dagpb.cid_str(self._listing[0]) if self._listing else self.root
        return {"cid": root, "entries": {p: e.wire() for p, e in entries.items()}}

    def _walk_sync(self, root: bytes) -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        stack: list[tuple[str, bytes]] = [("", root)]
        while stack:
            prefix, cid = stack.pop()
            for name, link in HamtDirectory.load(self.store.get, cid).items():
                path = f"{prefix}{name}"
                kind = unixfs.node_kind(self.store.get, link.cid)
                if kind == "hamt":
                    out[path] = Entry(path, "directory", dagpb.cid_str(link.cid), link.tsize)
                    stack.append((path + "/", link.cid))
                else:
                    out[path] = Entry(
                        path,
                        "file",
                        dagpb.cid_str(link.cid),
                        unixfs.file_size(self.store.get, link.cid),
                        self.mime_of(link.cid),
                    )
        return out

    def mime_of(self, cid: bytes) -> str:
        mime = self._mime.get(cid)
        if mime is None:
            head = b""
            for chunk in unixfs.read_file(self.store.get, cid):
                head += chunk
                if len(head) >= SNIFF_BYTES:
                    break
            mime = self._mime[cid] = detect_content_type(head[:SNIFF_BYTES])
        return mime

    def read(self, cid: bytes) -> Iterator[bytes]:
        return unixfs.read_file(self.store.get, cid)

    def content_sync(self, cid: bytes) -> dict[str, Any]:
        """The FileContent answer for a CID we hold (raises MissingBlock otherwise)."""
        raw = self.store.get(cid)
        if raw is None:
            raise unixfs.MissingBlock(cid)
        out: dict[str, Any] = {"cid": dagpb.cid_str(cid), "rawNode": base64.b64encode(raw).decode()}
        kind = unixfs.node_kind(self.store.get, cid)
        if kind in ("hamt", "directory"):
            out["isDirectory"] = True
            out["entries"] = {
                name: dagpb.cid_str(link.cid)
                for name, link in directory_links(self.store.get, cid).items()
            }
        else:
            out["isDirectory"] = False
            out["mimeType"] = self.mime_of(cid)
            out["content"] = base64.b64encode(b"".join(self.read(cid))).decode()
        return out


def directory_links(get: Callable[[bytes], bytes | None], cid: bytes) -> dict[str, dagpb.Link]:
    if unixfs.node_kind(get, cid) == "hamt":
        return dict(HamtDirectory.load(get, cid).items())
    return unixfs.list_basic_directory(get, cid)


class _open_source:
    """Bytes, a path or an open binary file, as one readable stream for the importer."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self._owned: BinaryIO | None = None

    def __enter__(self) -> Any:
        if isinstance(self.source, bytes | bytearray | memoryview):
            return [bytes(self.source)]
        if isinstance(self.source, Path):
            try:
                self._owned = self.source.open("rb")
            except OSError as exc:
                raise FileTreeError(f"cannot read {self.source}: {exc.strerror}") from exc
            return self._owned
        return self.source

    def __exit__(self, *exc: object) -> None:
        if self._owned is not None:
            self._owned.close()


__all__ = ["Cancel", "Entry", "FileTree", "FileTreeError", "PathError"]
