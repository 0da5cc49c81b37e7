"""UnixFS files: the importer that reproduces Go's CIDs, and streaming readers.

The importer follows boxo's balanced builder as ipfs-lite drives it (see
docs/spec/unixfs-notes.md): fixed 262144-byte chunks, dag-pb leaves (not raw),
at most 174 links per node, CIDv1 dag-pb everywhere. The same bytes must give the same
root CID as a Go peer, so every detail of the block layout is deliberate.

Import and read are both streaming: the importer keeps only one pending link list per
tree level (at most 174 entries each) and hands every block to `put` as soon as it exists;
the reader holds one block at a time plus the link lists of the nodes above it.
"""

from __future__ import annotations

import io
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import BinaryIO, Literal, NamedTuple, cast

from core.ipfs.dagpb import (
    DAG_PB,
    IDENTITY,
    RAW,
    DagPBError,
    Link,
    PBNode,
    cid_parts,
    cid_v0,
    cid_v1_dagpb,
    decode_varint,
    encode_varint,
)

CHUNK_SIZE = 262144
MAX_LINKS = 174

GetBlock = Callable[[bytes], bytes | None]
PutBlock = Callable[[bytes, bytes, list[bytes]], None]
NodeKind = Literal["file", "directory", "hamt"]


class UnixFSError(ValueError):
    """A block is not valid UnixFS (or not the kind of node the caller asked for)."""


class MissingBlock(LookupError):
    """A block the DAG needs is not in the store; `cid` says which."""

    def __init__(self, cid: bytes) -> None:
        super().__init__(f"missing block {cid.hex()}")
        self.cid = cid


class ImportCancelled(Exception):
    """The caller's `cancelled()` returned True during an import."""


class DataType(IntEnum):
    RAW = 0
    DIRECTORY = 1
    FILE = 2
    METADATA = 3
    SYMLINK = 4
    HAMT_SHARD = 5


# --- the UnixFS Data protobuf -----------------------------------------------------------------

# Wire types each known field may use: varints, bytes, and blocksizes either plain or packed.
_FIELD_WIRE_TYPES = {1: (0,), 2: (2,), 3: (0,), 4: (0, 2), 5: (0,), 6: (0,)}


@dataclass(slots=True)
class UnixFSData:
    """The UnixFS `Data` message; fields Go leaves unset stay None so they are not written."""

    type: DataType
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: list[int] = field(default_factory=list)
    hash_type: int | None = None
    fanout: int | None = None

    def encode(self) -> bytes:
        """Fields in number order, blocksizes unpacked: what Go's proto2 marshaller writes."""
        out = [b"\x08", encode_varint(self.type)]
        if self.data is not None:
            out += [b"\x12", encode_varint(len(self.data)), self.data]
        if self.filesize is not None:
            out += [b"\x18", encode_varint(self.filesize)]
        for size in self.blocksizes:
            out += [b"\x20", encode_varint(size)]
        if self.hash_type is not None:
            out += [b"\x28", encode_varint(self.hash_type)]
        if self.fanout is not None:
            out += [b"\x30", encode_varint(self.fanout)]
        return b"".join(out)

    @classmethod
    def decode(cls, raw: bytes) -> UnixFSData:
        """Parse with protobuf rules (unknown fields such as mode/mtime skipped, last value
        wins); anything malformed raises UnixFSError."""
        try:
            return cls._decode(bytes(raw))
        except DagPBError as exc:
            raise UnixFSError(f"bad UnixFS data: {exc}") from None

    @classmethod
    def _decode(cls, raw: bytes) -> UnixFSData:
        ints: dict[int, int] = {}
        data: bytes | None = None
        blocksizes: list[int] = []
        pos = 0
        while pos < len(raw):
            tag, pos = decode_varint(raw, pos)
            number, wire = tag >> 3, tag & 7
            if number == 0 or wire not in _FIELD_WIRE_TYPES.get(number, (0, 1, 2, 5)):
                raise UnixFSError(f"UnixFS field {number} has wire type {wire}")
            if wire == 0:
                value, pos = decode_varint(raw, pos)
                if number == 4:
                    blocksizes.append(value)
                else:
                    ints[number] = value
                continue
            body, pos = _read_field(raw, pos, wire)
            if number == 2:
                data = body
            elif number == 4:  # packed blocksizes, as some encoders write them
                blocksizes += _packed_varints(body)
        if 1 not in ints:
            raise UnixFSError("UnixFS data without a Type")
        try:
            data_type = DataType(ints[1])
        except ValueError:
            raise UnixFSError(f"unknown UnixFS type {ints[1]}") from None
        return cls(data_type, data, ints.get(3), blocksizes, ints.get(5), ints.get(6))


def _read_field(raw: bytes, pos: int, wire: int) -> tuple[bytes, int]:
    """The body of a non-varint field (also used to skip unknown ones)."""
    if wire == 2:
        length, pos = decode_varint(raw, pos)
    else:
        length = {1: 8, 5: 4}.get(wire, -1)
        if length < 0:
            raise UnixFSError(f"unsupported protobuf wire type {wire}")
    if pos + length > len(raw):
        raise UnixFSError("UnixFS field runs past the end of the data")
    return raw[pos : pos + length], pos + length


def _packed_varints(body: bytes) -> list[int]:
    values = []
    pos = 0
    while pos < len(body):
        value, pos = decode_varint(body, pos)
        values.append(value)
    return values


# --- import -----------------------------------------------------------------------------------


@dataclass(slots=True)
class ImportResult:
    cid: bytes
    size: int  # file bytes
    tsize: int  # cumulative block size, for the parent link's Tsize


class _Child(NamedTuple):
    cid: bytes
    tsize: int  # cumulative size of the child's DAG
    filesize: int  # file bytes under the child


class _BalancedBuilder:
    """boxo's balanced layout, built bottom-up as chunks stream in.

    `levels[h]` holds the finished children of the not-yet-written node at height h+1.
    A full level is written out only when another child arrives for it, and `finish`
    writes the partial right edge, so the tree matches Go's recursive fill exactly,
    including single-child nodes on the right edge (e.g. 175 chunks gives
    root -> [174 leaves], [1 leaf]).
    """

    def __init__(
        self, put: PutBlock, make_cid: Callable[[bytes], bytes], max_links: int = MAX_LINKS
    ) -> None:
        self._put = put
        self._make_cid = make_cid
        self._max_links = max_links  # tests shrink it to reach deep trees with few chunks
        self._levels: list[list[_Child]] = []

    def add_leaf(self, chunk: bytes | None) -> None:
        if not chunk:
            self._push(0, self._write(UnixFSData(DataType.FILE, data=chunk, filesize=0), []))
            return
        self.add_leaf_block(leaf_block(chunk), len(chunk))

    def add_leaf_block(self, block: bytes | bytearray, size: int) -> None:
        """A leaf already laid out as its dag-pb block (see `leaf_block`), `size` file bytes."""
        # A bytearray only from `_leaves` (see `import_file`).
        data = cast(bytes, block)
        cid = self._make_cid(data)
        self._put(cid, data, [])
        self._push(0, _Child(cid, len(block), size))

    def finish(self) -> _Child:
        if not self._levels:
            self.add_leaf(None)  # the empty file: one leaf without a Data field, as Go writes it
        height = 0
        while True:
            pending = self._levels[height]
            if height == len(self._levels) - 1 and len(pending) == 1:
                return pending[0]
            self._levels[height] = []
            self._push(height + 1, self._write_interior(pending))
            height += 1

    def _push(self, height: int, child: _Child) -> None:
        if height == len(self._levels):
            self._levels.append([])
        level = self._levels[height]
        if len(level) == self._max_links:
            self._levels[height] = []
            self._push(height + 1, self._write_interior(level))
        self._levels[height].append(child)

    def _write_interior(self, children: list[_Child]) -> _Child:
        sizes = [child.filesize for child in children]
        unixfs = UnixFSData(DataType.FILE, filesize=sum(sizes), blocksizes=sizes)
        return self._write(unixfs, children)

    def _write(self, unixfs: UnixFSData, children: list[_Child]) -> _Child:
        links = [Link("", child.cid, child.tsize) for child in children]
        block = PBNode(links, unixfs.encode()).encode()
        cid = self._make_cid(block)
        self._put(cid, block, [child.cid for child in children])
        tsize = len(block) + sum(child.tsize for child in children)
        return _Child(cid, tsize, unixfs.filesize or 0)


def leaf_block(chunk: bytes | bytearray | memoryview) -> bytes:
    """The dag-pb leaf for a non-empty chunk, built with one copy of the chunk.

    The same bytes as ``PBNode([], UnixFSData(FILE, data=chunk, filesize=n).encode())``
    (which copies the chunk twice): ``0a <len> 08 02 12 <n> <chunk> 18 <n>``. Copies of
    256 KiB chunks are a visible part of an import's time next to hashing them.
    """
    head, tail = _leaf_frame(len(chunk))
    return b"".join((head, chunk, tail))


def _leaf_frame(size: int) -> tuple[bytes, bytes]:
    """The bytes before and after a chunk of `size` bytes in its leaf block."""
    n = encode_varint(size)
    body = 2 + 1 + len(n) + size + 1 + len(n)
    return b"\x0a" + encode_varint(body) + b"\x08\x02\x12" + n, b"\x18" + n


_FULL_HEAD, _FULL_TAIL = _leaf_frame(CHUNK_SIZE)
#: Leaf buffers the importer may fill again: more than a batch holds (pending and in flight).
_POOL = 192


def _leaves(source: BinaryIO | Iterable[bytes]) -> Iterator[tuple[bytes | bytearray, int]]:
    """(leaf block, file bytes in it) for every chunk of the source, in order.

    A file object is read straight into the middle of a buffer laid out as the leaf block,
    so a full chunk is never copied in Python: joining it with its frame cost as much of the
    importing thread as reading the file did. Other sources (and a file's short last chunk)
    go through `_chunks`. Only real file objects are read this way: a duck-typed or
    RawIOBase reader may have no working ``readinto``.
    """
    if not isinstance(source, io.BufferedIOBase | io.FileIO):
        for chunk in _chunks(source):
            yield leaf_block(chunk), len(chunk)
        return
    start = len(_FULL_HEAD)
    end = start + CHUNK_SIZE
    for block in _leaf_buffers(end + len(_FULL_TAIL)):
        filled = _fill(source, memoryview(block)[start:end])
        if filled < CHUNK_SIZE:
            if filled:
                yield leaf_block(block[start : start + filled]), filled
            return
        block[:start] = _FULL_HEAD
        block[end:] = _FULL_TAIL
        yield block, CHUNK_SIZE


def _leaf_buffers(size: int) -> Iterator[bytearray]:
    """Buffers for full leaves: one the put has let go of again, else a new one.

    A yielded buffer is the put's to keep; once nothing but this pool refers to it any
    more (a batch drops its blocks after their commit), nobody can see it change, so it is
    filled again. Fresh 256 KiB buffers cost a zero-fill and a page fault per 4 KiB: a
    tenth of the importing thread's time. The pool remembers the last `_POOL` buffers only,
    so a put that keeps every block (a dict) just gets new ones.
    """
    pool: deque[bytearray] = deque()
    while True:
        # References to pool[0] when it is free: the deque's and getrefcount's argument.
        if pool and sys.getrefcount(pool[0]) == 2:
            block = pool.popleft()
        else:
            block = bytearray(size)
        pool.append(block)
        if len(pool) > _POOL:
            pool.popleft()
        yield block


def _fill(source: io.BufferedIOBase | io.FileIO, view: memoryview) -> int:
    """Read into `view` until it is full or the source ends (pipes return short reads)."""
    filled = 0
    with view:
        while filled < len(view):
            got = source.readinto(view[filled:])
            if got is None:
                raise UnixFSError("source returned no data without EOF (non-blocking stream?)")
            if not got:
                break
            filled += got
    return filled


def _pieces(source: BinaryIO | Iterable[bytes]) -> Iterator[bytes | bytearray | memoryview]:
    """The source as a stream of byte strings; file objects are read 256 KiB at a time."""
    if isinstance(source, bytes | bytearray | memoryview):
        yield source  # a bare bytes object is one piece, not an iterable of ints
        return
    read = getattr(source, "read", None)
    if read is None:
        yield from source
        return
    while True:
        piece = read(CHUNK_SIZE)
        if piece is None:
            raise UnixFSError("source returned no data without EOF (non-blocking stream?)")
        if not piece:
            return
        yield piece


def _chunks(source: BinaryIO | Iterable[bytes]) -> Iterator[bytes]:
    """Exact CHUNK_SIZE pieces (the last may be short), whatever sizes the source yields.

    Short reads from pipes and odd-sized iterables are re-assembled, because Go's size
    splitter cuts at absolute offsets; a piece is copied at most twice, and a bytes piece
    that is already one whole chunk not at all.
    """
    pending = bytearray()
    for piece in _pieces(source):
        if not pending and len(piece) == CHUNK_SIZE and isinstance(piece, bytes):
            yield piece  # the common case for file reads: no copy at all
            continue
        view = memoryview(piece).cast("B")
        if pending:
            take = CHUNK_SIZE - len(pending)
            pending += view[:take]
            view = view[take:]
            if len(pending) < CHUNK_SIZE:
                continue
            yield bytes(pending)
            pending.clear()
        while len(view) >= CHUNK_SIZE:
            yield bytes(view[:CHUNK_SIZE])
            view = view[CHUNK_SIZE:]
        pending += view
    if pending:
        yield bytes(pending)


def import_file(
    source: BinaryIO | Iterable[bytes],
    put: PutBlock,
    *,
    progress: Callable[[int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    cid_version: Literal[0, 1] = 1,
) -> ImportResult:
    """Chunk, build and store a file exactly as ipfs-lite would; returns its root.

    `put(cid, block, child_cids)` sees every block, children before parents; a block is the
    put's to keep (full leaves read from a file object arrive as bytearrays, so a store
    need not copy them; the importer fills one again only once no one else refers to it).
    `progress`
    gets the running byte count after each chunk; `cancelled` is polled before each chunk
    and raises ImportCancelled (blocks already put stay put; the store's GC owns them).
    `cid_version=0` gives kubo's legacy CIDv0 DAG, used for cross-checking with kubo.
    """
    builder = _BalancedBuilder(put, cid_v1_dagpb if cid_version == 1 else cid_v0)
    done = 0
    for block, size in _leaves(source):
        if cancelled is not None and cancelled():
            raise ImportCancelled
        builder.add_leaf_block(block, size)
        done += size
        if progress is not None:
            progress(done)
    root = builder.finish()
    return ImportResult(root.cid, root.filesize, root.tsize)


# --- reading ----------------------------------------------------------------------------------


def load_block(get: GetBlock, cid: bytes) -> bytes:
    """The block for `cid`; identity CIDs carry their block inline. Raises MissingBlock."""
    parts = cid_parts(cid)
    if parts.hash_code == IDENTITY:
        return parts.digest
    block = get(cid)
    if block is None:
        raise MissingBlock(cid)
    return block


def decode_dagpb(cid: bytes, block: bytes) -> tuple[PBNode, UnixFSData]:
    """A dag-pb block and its UnixFS data; malformation becomes UnixFSError."""
    try:
        node = PBNode.decode(block)
    except DagPBError as exc:
        raise UnixFSError(f"block {cid.hex()}: {exc}") from None
    if node.data is None:
        raise UnixFSError(f"block {cid.hex()}: dag-pb node without UnixFS data")
    return node, UnixFSData.decode(node.data)


def _codec(cid: bytes) -> int:
    try:
        return cid_parts(cid).codec
    except DagPBError as exc:
        raise UnixFSError(str(exc)) from None


class _FilePart(NamedTuple):
    data: bytes
    children: list[tuple[bytes, int]]  # (cid, file bytes expected under it)
    size: int


def _load_file_part(get: GetBlock, cid: bytes) -> _FilePart:
    """One node of a file DAG, checked for internal consistency."""
    codec = _codec(cid)
    block = load_block(get, cid)
    if codec == RAW:
        return _FilePart(block, [], len(block))
    if codec != DAG_PB:
        raise UnixFSError(f"unsupported codec 0x{codec:x} in a file")
    node, unixfs = decode_dagpb(cid, block)
    if unixfs.type not in (DataType.FILE, DataType.RAW):
        raise UnixFSError(f"expected a file, found UnixFS {unixfs.type.name}")
    if len(unixfs.blocksizes) != len(node.links):
        raise UnixFSError(
            f"file node has {len(node.links)} links but {len(unixfs.blocksizes)} blocksizes"
        )
    data = unixfs.data or b""
    size = len(data) + sum(unixfs.blocksizes)
    if unixfs.filesize is not None and unixfs.filesize != size:
        raise UnixFSError(f"file node says filesize {unixfs.filesize} but holds {size} bytes")
    children = [
        (link.cid, expected) for link, expected in zip(node.links, unixfs.blocksizes, strict=True)
    ]
    return _FilePart(data, children, size)


def read_file(get: GetBlock, cid: bytes) -> Iterator[bytes]:
    """The file's bytes in order, one block's worth at a time (depth-first, no recursion).

    Each child's size is checked against its parent's blocksizes, so a truncated or
    inconsistent DAG raises UnixFSError instead of yielding wrong bytes.
    """
    root = _load_file_part(get, cid)
    if root.data:
        yield root.data
    stack = [iter(root.children)]
    while stack:
        step = next(stack[-1], None)
        if step is None:
            stack.pop()
            continue
        child_cid, expected = step
        part = _load_file_part(get, child_cid)
        if part.size != expected:
            raise UnixFSError(
                f"child {child_cid.hex()} holds {part.size} bytes, parent expects {expected}"
            )
        if part.data:
            yield part.data
        if part.children:
            stack.append(iter(part.children))


def file_size(get: GetBlock, cid: bytes) -> int:
    """File bytes under `cid`, from the root block alone."""
    return _load_file_part(get, cid).size


def node_kind(get: GetBlock, cid: bytes) -> NodeKind:
    """What a CID names, from its root block: a file, a plain directory or a HAMT shard."""
    codec = _codec(cid)
    if codec == RAW:
        return "file"
    if codec != DAG_PB:
        raise UnixFSError(f"unsupported codec 0x{codec:x}")
    _, unixfs = decode_dagpb(cid, load_block(get, cid))
    kinds: dict[DataType, NodeKind] = {
        DataType.RAW: "file",
        DataType.FILE: "file",
        DataType.DIRECTORY: "directory",
        DataType.HAMT_SHARD: "hamt",
    }
    kind = kinds.get(unixfs.type)
    if kind is None:
        raise UnixFSError(f"unsupported UnixFS type {unixfs.type.name}")
    return kind


def dag_cids(get: GetBlock, cid: bytes) -> Iterator[bytes]:
    """Every block CID reachable from `cid`, parents before children, each once.

    Works for any dag-pb/raw DAG (files, directories, HAMTs). Identity CIDs are walked
    but not yielded: they have no block to store or serve.
    """
    seen: set[bytes] = set()
    stack = [cid]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        codec = _codec(current)
        block = load_block(get, current)
        if cid_parts(current).hash_code != IDENTITY:
            yield current
        if codec == RAW:
            continue
        if codec != DAG_PB:
            raise UnixFSError(f"unsupported codec 0x{codec:x}")
        try:
            links = PBNode.decode(block).links
        except DagPBError as exc:
            raise UnixFSError(f"block {current.hex()}: {exc}") from None
        stack.extend(link.cid for link in reversed(links))


def list_basic_directory(get: GetBlock, cid: bytes) -> dict[str, Link]:
    """Entries of a plain (non-HAMT) UnixFS directory, as other IPFS nodes write them.

    Names are returned as stored; callers that map them onto paths must reject "", ".",
    ".." and names containing "/".
    """
    if _codec(cid) != DAG_PB:
        raise UnixFSError("a directory must be dag-pb")
    node, unixfs = decode_dagpb(cid, load_block(get, cid))
    if unixfs.type != DataType.DIRECTORY:
        raise UnixFSError(f"expected a directory, found UnixFS {unixfs.type.name}")
    entries: dict[str, Link] = {}
    for link in node.links:
        if link.name in entries:
            raise UnixFSError(f"duplicate directory entry {link.name!r}")
        entries[link.name] = link
    return entries
