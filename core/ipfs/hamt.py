"""UnixFS HAMT sharded directories, byte-compatible with boxo's `hamt.Shard`.

Every Peerdesk directory is a HAMT (fanout 256, murmur3-x64-64 of the name), so that a
Go peer holding the same tree computes the same root CID (see
docs/spec/unixfs-notes.md). The shape is canonical: a bucket holding one entry
links to it directly, two or more entries share a sub-shard one level deeper, and a
removal that leaves a sub-shard with a single *entry* folds that entry back up (a
sub-shard whose only child is another sub-shard still holds two or more entries and
stays, exactly as boxo does). So the root CID depends only on the set of names.

Shards load lazily and only modified ("dirty") shards are rewritten on flush, so an
update to a 100 000-entry directory writes just the few shards on one path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import mmh3

from core.ipfs.dagpb import DAG_PB, Link, PBNode, cid_parts, cid_v0
from core.ipfs.unixfs import (
    DataType,
    GetBlock,
    PutBlock,
    UnixFSData,
    UnixFSError,
    decode_dagpb,
    load_block,
)

FANOUT = 256
HASH_MURMUR3 = 0x22
MAX_DEPTH = 8  # one level per byte of the 64-bit hash


class HamtError(UnixFSError):
    """A shard is malformed, or the directory cannot hold a name (hash exhausted)."""


def _name_key(name: str) -> bytes:
    """The name's bytes as Go hashes and stores them.

    surrogateescape round-trips names decoded from non-UTF-8 link names; the empty name is
    refused because its link ("%02X" prefix alone) would read back as a sub-shard.
    """
    if not name:
        raise ValueError("directory entry names must not be empty")
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise ValueError(f"name {name!r} cannot be encoded as UTF-8") from None


def _hash(key: bytes) -> bytes:
    """h1 of MurmurHash3_x64_128 (seed 0), big-endian: byte d picks the bucket at depth d."""
    return mmh3.hash64(key, seed=0, x64arch=True, signed=False)[0].to_bytes(8, "big")


class _Shard:
    """One shard node. `children` maps bucket -> entry Link or sub-shard; None = not loaded.

    `cid` is None while the shard has unwritten changes. `prefix` holds the buckets that
    lead here from the root, so its length is the shard's depth.
    """

    __slots__ = ("children", "cid", "prefix", "tsize")

    def __init__(
        self,
        prefix: bytes,
        cid: bytes | None = None,
        tsize: int = 0,
        children: dict[int, Link | _Shard] | None = None,
    ) -> None:
        self.prefix = prefix
        self.cid = cid
        self.tsize = tsize
        self.children = children


class HamtDirectory:
    """A mutable view of a HAMT directory over a block store.

    Names must be non-empty and encodable (ValueError otherwise); "/" and other path rules
    are the caller's to enforce. Entry Links carry the entry's own name (without the
    bucket prefix). Not thread-safe, and not to be mutated while `items()` is iterating.
    Blocks come from `get` and raise MissingBlock/HamtError as the walk reaches them.
    """

    def __init__(self, get: GetBlock, root: _Shard) -> None:
        self._get = get
        self._root = root
        self._count: int | None = None

    @classmethod
    def empty(cls, get: GetBlock) -> HamtDirectory:
        directory = cls(get, _Shard(b"", children={}))
        directory._count = 0
        return directory

    @classmethod
    def load(cls, get: GetBlock, root: bytes) -> HamtDirectory:
        """Open an existing directory; the root shard is read and checked now, the rest
        only when a lookup or walk reaches it."""
        directory = cls(get, _Shard(b"", cid=root))
        directory._children(directory._root)
        return directory

    # --- queries ----------------------------------------------------------------------------

    def lookup(self, name: str) -> Link | None:
        key = _name_key(name)
        digest = _hash(key)
        shard = self._root
        while True:
            child = self._children(shard).get(digest[len(shard.prefix)])
            if isinstance(child, _Shard):
                shard = child
                continue
            return child if child is not None and child.name == name else None

    def items(self) -> Iterator[tuple[str, Link]]:
        """All entries in hash order, loading shards as the walk reaches them."""
        stack = [self._sorted_children(self._root)]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
            elif isinstance(child, _Shard):
                stack.append(self._sorted_children(child))
            else:
                yield child.name, child

    def __len__(self) -> int:
        """Entry count; on a loaded directory the first call walks (and loads) every shard."""
        if self._count is None:
            self._count = sum(1 for _ in self.items())
        return self._count

    # --- updates ----------------------------------------------------------------------------

    def set(self, name: str, cid: bytes, tsize: int) -> None:
        """Insert or replace `name`. Raises HamtError if its full 64-bit hash collides with
        another name's (Go's "sharded directory too deep")."""
        key = _name_key(name)
        digest = _hash(key)
        entry = Link(name, cid, tsize)
        path: list[_Shard] = []
        shard = self._root
        while True:
            path.append(shard)
            children = self._children(shard)
            bucket = digest[len(shard.prefix)]
            child = children.get(bucket)
            if isinstance(child, _Shard):
                shard = child
                continue
            if child is not None and child.name == name:
                if child == entry:
                    return  # unchanged: nothing to rewrite
                added = False
                children[bucket] = entry
            elif child is None:
                added = True
                children[bucket] = entry
            else:
                added = True
                children[bucket] = self._split(
                    shard.prefix + bytes((bucket,)), child, entry, digest
                )
            break
        self._mark_dirty(path)
        if added and self._count is not None:
            self._count += 1

    def remove(self, name: str) -> bool:
        """Delete `name`; returns False if it was not there. Folds sub-shards left holding
        a single entry back into their parents, level by level, as boxo does."""
        key = _name_key(name)
        digest = _hash(key)
        path: list[tuple[_Shard, int]] = []
        shard = self._root
        while True:
            bucket = digest[len(shard.prefix)]
            child = self._children(shard).get(bucket)
            if child is None:
                return False
            path.append((shard, bucket))
            if isinstance(child, _Shard):
                shard = child
                continue
            if child.name != name:
                return False
            break
        del self._children(shard)[bucket]
        self._collapse(path)
        self._mark_dirty([s for s, _ in path])
        if self._count is not None:
            self._count -= 1
        return True

    def flush(self, put: PutBlock) -> tuple[bytes, int]:
        """Write every dirty shard (children before parents); returns the root's binary
        CIDv0 and its cumulative size (the Tsize a parent directory's link needs)."""
        self._write(self._root, put)
        assert self._root.cid is not None
        return self._root.cid, self._root.tsize

    # --- internals --------------------------------------------------------------------------

    @staticmethod
    def _split(prefix: bytes, existing: Link, new: Link, new_digest: bytes) -> _Shard:
        """A chain of sub-shards, one per hash byte the two names share, ending in a shard
        holding both. Nothing is modified if the hashes cannot be told apart."""
        old_digest = _hash(_name_key(existing.name))
        top = shard = _Shard(prefix, children={})
        while True:
            depth = len(shard.prefix)
            if depth >= MAX_DEPTH:
                raise HamtError("sharded directory too deep")
            old_bucket, new_bucket = old_digest[depth], new_digest[depth]
            if old_bucket != new_bucket:
                shard.children = {old_bucket: existing, new_bucket: new}
                return top
            deeper = _Shard(shard.prefix + bytes((old_bucket,)), children={})
            shard.children = {old_bucket: deeper}
            shard = deeper

    @staticmethod
    def _collapse(path: list[tuple[_Shard, int]]) -> None:
        """Bottom-up: a sub-shard now holding one entry is replaced by that entry; an empty
        one (possible only in foreign, non-canonical trees) is dropped."""
        for depth in range(len(path) - 1, 0, -1):
            shard = path[depth][0]
            parent, bucket = path[depth - 1]
            assert shard.children is not None and parent.children is not None
            if not shard.children:
                del parent.children[bucket]
            elif len(shard.children) == 1:
                (only,) = shard.children.values()
                if isinstance(only, Link):
                    parent.children[bucket] = only

    @staticmethod
    def _mark_dirty(path: list[_Shard]) -> None:
        for shard in path:
            shard.cid = None

    def _write(self, shard: _Shard, put: PutBlock) -> None:
        if shard.cid is not None:
            return  # clean, or never loaded: its block is already stored
        assert shard.children is not None
        links = []
        for bucket in sorted(shard.children):
            child = shard.children[bucket]
            label = f"{bucket:02X}"
            if isinstance(child, _Shard):
                self._write(child, put)
                assert child.cid is not None
                links.append(Link(label, child.cid, child.tsize))
            else:
                links.append(Link(label + child.name, child.cid, child.tsize))
        block = PBNode(links, _shard_data(shard.children.keys())).encode()
        cid = cid_v0(block)
        put(cid, block, [link.cid for link in links])
        shard.cid = cid
        shard.tsize = len(block) + sum(link.tsize for link in links)

    def _sorted_children(self, shard: _Shard) -> Iterator[Link | _Shard]:
        children = self._children(shard)
        return iter([children[bucket] for bucket in sorted(children)])

    def _children(self, shard: _Shard) -> dict[int, Link | _Shard]:
        if shard.children is None:
            assert shard.cid is not None
            shard.children, shard.tsize = _decode_shard(
                shard.cid, load_block(self._get, shard.cid), shard.prefix
            )
        return shard.children


def _shard_data(buckets: Iterable[int]) -> bytes:
    """UnixFS data of a shard: `08 05 [12 <bitfield>] 28 22 30 80 02`.

    The bitfield is the big-endian integer with bit i set for bucket i, leading zero bytes
    stripped; an empty shard has no Data field at all.
    """
    bits = 0
    for bucket in buckets:
        bits |= 1 << bucket
    bitfield = bits.to_bytes((bits.bit_length() + 7) // 8, "big")
    return UnixFSData(
        DataType.HAMT_SHARD, data=bitfield or None, hash_type=HASH_MURMUR3, fanout=FANOUT
    ).encode()


def _decode_shard(cid: bytes, block: bytes, prefix: bytes) -> tuple[dict[int, Link | _Shard], int]:
    """Children and cumulative size of a shard block from an untrusted source.

    Checks everything lookups rely on: type, hash function, fanout, that the links match
    the bitfield one-to-one in bucket order, and that every entry hashes to where it sits.
    """
    if cid_parts(cid).codec != DAG_PB:
        raise HamtError("a HAMT shard must be a dag-pb block")  # Go: ErrNotProtobuf
    try:
        node, unixfs = decode_dagpb(cid, block)
    except UnixFSError as exc:
        raise HamtError(str(exc)) from None
    if unixfs.type != DataType.HAMT_SHARD:
        raise HamtError(f"expected a HAMT shard, found UnixFS {unixfs.type.name}")
    if unixfs.hash_type != HASH_MURMUR3:
        raise HamtError(f"unsupported HAMT hash type {unixfs.hash_type}")
    if unixfs.fanout != FANOUT:
        raise HamtError(f"unsupported HAMT fanout {unixfs.fanout}")
    bitfield = unixfs.data or b""
    if len(bitfield) > FANOUT // 8:
        raise HamtError("HAMT bitfield longer than the fanout")
    buckets = _set_bits(int.from_bytes(bitfield, "big"))
    if len(buckets) != len(node.links):
        raise HamtError(
            f"HAMT shard has {len(node.links)} links but its bitfield sets {len(buckets)} buckets"
        )
    children: dict[int, Link | _Shard] = {}
    for bucket, link in zip(buckets, node.links, strict=True):
        children[bucket] = _decode_child(link, bucket, prefix)
    return children, len(block) + sum(link.tsize for link in node.links)


def _set_bits(bits: int) -> list[int]:
    """Indices of the set bits, lowest first (costs one step per set bit, not per bucket)."""
    indices = []
    while bits:
        lowest = bits & -bits
        indices.append(lowest.bit_length() - 1)
        bits ^= lowest
    return indices


def _decode_child(link: Link, bucket: int, prefix: bytes) -> Link | _Shard:
    label = f"{bucket:02X}"
    if link.name[:2] != label:
        raise HamtError(f"HAMT link {link.name!r} does not match bucket {label}")
    path = prefix + bytes((bucket,))
    if len(link.name) == 2:
        if len(path) >= MAX_DEPTH:
            raise HamtError("sharded directory too deep")
        return _Shard(path, cid=link.cid, tsize=link.tsize)
    name = link.name[2:]
    if _hash(_name_key(name))[: len(path)] != path:
        raise HamtError(f"HAMT entry {name!r} is stored under the wrong bucket")
    return Link(name, link.cid, link.tsize)
