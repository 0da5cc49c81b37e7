"""dag-pb and UnixFS files: Go-published CIDs, DAG structure, streaming reads, bad input.

Vectors come from docs/spec/unixfs-notes.md and from tests in kubo and
js-ipfs-unixfs whose inputs can be regenerated exactly (see each test's docstring).
"""

from __future__ import annotations

import hashlib
import io
import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.ipfs.dagpb import (
    DAG_PB,
    RAW,
    DagPBError,
    Link,
    PBNode,
    cid_parts,
    cid_str,
    cid_v0,
    cid_v1_dagpb,
    parse_cid,
    verify,
)
from core.ipfs.unixfs import (
    CHUNK_SIZE,
    MAX_LINKS,
    DataType,
    ImportCancelled,
    MissingBlock,
    UnixFSData,
    UnixFSError,
    _BalancedBuilder,
    _Child,
    _leaf_buffers,
    dag_cids,
    file_size,
    import_file,
    leaf_block,
    list_basic_directory,
    node_kind,
    read_file,
)

VECTORS = Path(__file__).parent / "vectors"


class MemoryStore:
    """Dict-backed block store that checks the importer's children-before-parents order."""

    def __init__(self) -> None:
        self.blocks: dict[bytes, bytes] = {}
        self.puts: list[bytes] = []

    def put(self, cid: bytes, block: bytes, children: list[bytes]) -> None:
        assert verify(cid, block)
        missing = [c for c in children if c not in self.blocks]
        assert not missing, "a parent was put before its children"
        self.blocks[cid] = block
        self.puts.append(cid)

    def get(self, cid: bytes) -> bytes | None:
        return self.blocks.get(cid)


def discard(cid: bytes, block: bytes, children: list[bytes]) -> None:
    """A put() for imports that only need the root CID."""


def chacha20_stream(size: int, seed: str) -> Iterator[bytes]:
    """kubo's test/cli/testutils DeterministicRandomReaderBytes: ChaCha20 keystream with
    key sha256(seed) and an all-zero nonce."""
    ciphers = pytest.importorskip("cryptography.hazmat.primitives.ciphers")
    key = hashlib.sha256(seed.encode()).digest()
    encryptor = ciphers.Cipher(ciphers.algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    while size > 0:
        n = min(size, 1 << 20)
        yield encryptor.update(bytes(n))
        size -= n


def go_math_rand_bytes(seed: int, size: int) -> bytes:
    """`random-data -seed=N -size=M` as kubo used it in 2025 (go-test v0.2, math/rand v1):
    Rand.Read takes 7 little-endian bytes from each Int63 of the seeded rngSource."""
    cooked = [
        int(line)
        for line in (VECTORS / "go_math_rand_cooked.txt").read_text().split("\n")
        if line and not line.startswith("#")
    ]
    mask = (1 << 64) - 1

    def seedrand(x: int) -> int:
        x = 48271 * (x % 44488) - 3399 * (x // 44488)
        return x + 0x7FFFFFFF if x < 0 else x

    x = seed % 0x7FFFFFFF or 89482311
    vec = [0] * 607
    for i in range(-20, 607):
        x = seedrand(x)
        if i >= 0:
            u = x << 40
            x = seedrand(x)
            u ^= x << 20
            x = seedrand(x)
            u ^= x
            vec[i] = (u ^ cooked[i]) & mask
    tap, feed = 0, 607 - 273
    out = bytearray()
    while len(out) < size:
        tap = tap - 1 if tap else 606
        feed = feed - 1 if feed else 606
        vec[feed] = (vec[feed] + vec[tap]) & mask
        out += (vec[feed] & 0xFFFFFFFFFFFFFF).to_bytes(7, "little")
    return bytes(out[:size])


def pattern_chunks(count: int, last: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Cheap deterministic content: chunk i is filled with byte i % 251."""
    for i in range(count):
        yield bytes([i % 251]) * (last if i == count - 1 else CHUNK_SIZE)


def import_cid(data: bytes, version: int = 1) -> str:
    return cid_str(import_file(data, discard, cid_version=version).cid)  # type: ignore[arg-type]


# --- published vectors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "version", "expected"),
    [
        (b"", 1, "bafybeif7ztnhq65lumvvtr4ekcwd2ifwgm3awq4zfr3srh462rwyinlb4y"),
        (b"hello world\n", 1, "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby"),
        (b"x", 1, "bafybeiczcctdlznuiia25cbxs3bmdsinqecjoqocn43kvxcy4u5fgouucu"),
        (b"hello world\n", 0, "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"),
        # kubo test/cli/cid_profiles_test.go, unixfs-v0-2015 SmallFileCID
        (b"hello world", 0, "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"),
        # kubo test/sharness/t0260-sharding.sh: the file "100\n" resolved inside the sharded dir
        (b"100\n", 0, "QmZ3RfWk1u5LEGYLHA633B5TNJy3Du27K6Fny9wcxpowGS"),
    ],
)
def test_small_file_vectors(data: bytes, version: int, expected: str) -> None:
    assert import_cid(data, version) == expected


def test_empty_file_block_is_exactly_what_go_writes() -> None:
    store = MemoryStore()
    result = import_file(b"", store.put)
    assert store.blocks[result.cid] == bytes.fromhex("0a0408021800")
    assert (result.size, result.tsize) == (0, 6)


@pytest.mark.parametrize("size", [1, 2, 127, 128, 16_377, 16_384, 2_097_151, CHUNK_SIZE])
def test_leaf_fast_path_is_the_generic_encoding(size: int) -> None:
    """The one-copy leaf builder must write exactly what the generic dag-pb + UnixFS
    encoders write, across every varint length boundary of the chunk and block sizes."""
    chunk = bytes(random.Random(size).getrandbits(8) for _ in range(min(size, 64))) * (
        size // min(size, 64)
    ) + b"t" * (size % min(size, 64))
    assert len(chunk) == size
    generic = PBNode([], UnixFSData(DataType.FILE, data=chunk, filesize=size).encode()).encode()
    assert leaf_block(chunk) == generic
    assert leaf_block(memoryview(bytearray(chunk))) == generic


@pytest.mark.parametrize(
    ("size", "seed", "expected"),
    [
        (CHUNK_SIZE, "chunk-v0-seed", "QmWmRj3dFDZdb6ABvbmKhEL6TmPbAfBZ1t5BxsEyJrcZhE"),
        (CHUNK_SIZE + 1, "chunk-v0-seed", "QmYyLxtzZyW22zpoVAtKANLRHpDjZtNeDjQdJrcQNWoRkJ"),
        (MAX_LINKS * CHUNK_SIZE, "v0-seed", "QmUbBALi174SnogsUzLpYbD4xPiBSFANF4iztWCsHbMKh2"),
        (MAX_LINKS * CHUNK_SIZE + 1, "v0-seed", "QmV81WL765sC8DXsRhE5fJv2rwhS4icHRaf3J9Zk5FdRnW"),
    ],
)
def test_kubo_profile_vectors(size: int, seed: str, expected: str) -> None:
    """kubo test/cli/cid_profiles_test.go, profile unixfs-v0-2015 (CIDv0, dag-pb leaves,
    256 KiB, 174 links): the same builder as ours with CIDv0 CIDs. The last one is
    175 chunks with a 1-byte tail: root -> [174 leaves], [1 leaf]."""
    result = import_file(chacha20_stream(size, seed), discard, cid_version=0)
    assert cid_str(result.cid) == expected
    assert result.size == size


def test_js_unixfs_parity_with_go_multi_level() -> None:
    """js-ipfs-unixfs importer test hash-parity-with-go-ipfs ('yields the same tree as
    go-ipfs', balanced, CIDv0, rawLeaves false): its 'random' stream of 45 900 000 bytes
    is all zeros (256 & byte == 0), which is 176 chunks: a two-level tree."""
    pieces = (bytes(300000) for _ in range(153))
    result = import_file(pieces, discard, cid_version=0)
    assert cid_str(result.cid) == "QmRdPboiJQoZ5cdazR9a8vGqdJvWg6M5bfdtUSKNHpuscj"


@pytest.fixture(scope="module")
def go_random_5mb() -> bytes:
    data = go_math_rand_bytes(41, 5242880)
    # the generator is right: kubo t0040 checks this multihash (sha1) of the file
    assert hashlib.sha1(data).hexdigest() == "5b8c4bc8f87ea2fcfc3d55708b8cac2aadf12862"
    return data


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (0, "QmapAfmzmeWYTNztMQEhUXFcSGrsax22WRG7YN9xLdMeQq"),
        (1, "bafybeifq4unep5w4agr3nlynxidj2rymf6dzu6bf4ieqqildkboe5mdmne"),
    ],
)
def test_kubo_t0040_5mb_vectors(go_random_5mb: bytes, version: int, expected: str) -> None:
    """kubo t0040-add-and-cat.sh as of commit 2ca5637c (Feb 2025): `ipfs add` and
    `ipfs add --cid-version=1 --raw-leaves=false` of random-data -seed=41, 20 chunks.
    The CIDv1 one is exactly Peerdesk's format, interior node included."""
    assert import_cid(go_random_5mb, version) == expected


# --- DAG structure ----------------------------------------------------------------------------


def check_file_dag(store: MemoryStore, cid: bytes) -> tuple[int, int, int]:
    """Decode a whole file DAG, asserting every layout rule; returns (depth, leaves, bytes)."""
    assert cid_parts(cid)[:2] == (1, DAG_PB)
    node = PBNode.decode(store.blocks[cid])
    unixfs = UnixFSData.decode(node.data or b"")
    assert unixfs.type == DataType.FILE
    if not node.links:
        assert unixfs.filesize == len(unixfs.data or b"") <= CHUNK_SIZE
        assert not unixfs.blocksizes
        return 0, 1, unixfs.filesize
    assert unixfs.data is None and len(node.links) <= MAX_LINKS
    assert unixfs.hash_type is None and unixfs.fanout is None
    depths, leaves = set(), 0
    for link, blocksize in zip(node.links, unixfs.blocksizes, strict=True):
        assert link.name == ""
        depth, count, size = check_file_dag(store, link.cid)
        assert size == blocksize
        assert link.tsize == cumulative_size(store, link.cid)
        depths.add(depth)
        leaves += count
    assert len(depths) == 1, "all leaves at the same depth"
    assert unixfs.filesize == sum(unixfs.blocksizes)
    return depths.pop() + 1, leaves, unixfs.filesize


def cumulative_size(store: MemoryStore, cid: bytes) -> int:
    node = PBNode.decode(store.blocks[cid])
    return len(store.blocks[cid]) + sum(link.tsize for link in node.links)


def test_175_chunks_structure() -> None:
    store = MemoryStore()
    result = import_file(pattern_chunks(175, last=1000), store.put)
    assert check_file_dag(store, result.cid) == (2, 175, 174 * CHUNK_SIZE + 1000)
    root = PBNode.decode(store.blocks[result.cid])
    assert [len(PBNode.decode(store.blocks[link.cid]).links) for link in root.links] == [174, 1]
    assert UnixFSData.decode(root.data or b"").blocksizes == [174 * CHUNK_SIZE, 1000]
    assert result.tsize == cumulative_size(store, result.cid)
    assert result.size == 174 * CHUNK_SIZE + 1000
    assert len(store.blocks) == len(store.puts) == 175 + 3
    assert store.puts[-1] == result.cid


def go_balanced_reference(chunks: list[bytes], max_links: int) -> bytes:
    """boxo balanced.Layout / fillNodeRec, transcribed as recursion over a chunk list, built
    on the primitives directly so it is independent of the streaming builder."""
    queue = list(chunks)

    def write(unixfs: UnixFSData, children: list[_Child]) -> _Child:
        links = [Link("", c.cid, c.tsize) for c in children]
        block = PBNode(links, unixfs.encode()).encode()
        tsize = len(block) + sum(c.tsize for c in children)
        return _Child(cid_v1_dagpb(block), tsize, unixfs.filesize or 0)

    def leaf() -> _Child:
        data = queue.pop(0)
        return write(UnixFSData(DataType.FILE, data=data, filesize=len(data)), [])

    def fill(children: list[_Child], depth: int) -> _Child:
        while len(children) < max_links and queue:
            children.append(leaf() if depth == 1 else fill([], depth - 1))
        sizes = [c.filesize for c in children]
        return write(UnixFSData(DataType.FILE, filesize=sum(sizes), blocksizes=sizes), children)

    if not queue:
        return write(UnixFSData(DataType.FILE, filesize=0), []).cid
    root, depth = leaf(), 1
    while queue:
        root, depth = fill([root], depth), depth + 1
    return root.cid


@pytest.mark.parametrize("max_links", [2, 3, 4])
def test_streaming_builder_matches_go_recursion(max_links: int) -> None:
    """Every chunk count up to two levels past max_links**3, so deep trees, full trees,
    one-past-full trees and single-child right edges (like 174*174+1 chunks) are covered."""
    for count in range(max_links**3 + max_links + 2):
        chunks = [bytes([i % 256, count % 256]) * (i + 1) for i in range(count)]
        builder = _BalancedBuilder(discard, cid_v1_dagpb, max_links=max_links)
        for chunk in chunks:
            builder.add_leaf(chunk)
        assert builder.finish().cid == go_balanced_reference(chunks, max_links), count


def test_import_memory_is_bounded() -> None:
    """Only per-level link lists are held: 200 chunks (52 MB) with a discarding store."""
    tracemalloc.start()
    try:
        import_file(pattern_chunks(200), discard)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * CHUNK_SIZE


# --- sources, progress, cancellation ----------------------------------------------------------


class ShortReads(io.RawIOBase):
    """A pipe-like reader that returns arbitrary short reads (read and readinto alike)."""

    def __init__(self, data: bytes, seed: int) -> None:
        self._data = memoryview(data)
        self._rng = random.Random(seed)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = self._rng.randint(1, max(1, min(size, 100_000)))
        piece, self._data = self._data[:n], self._data[n:]
        return bytes(piece)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        piece = self.read(len(buffer))
        buffer[: len(piece)] = piece
        return len(piece)


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 17]
)
def test_sources_rechunk_identically(size: int) -> None:
    data = random.Random(size).randbytes(size)
    expected = import_file(data, discard).cid
    odd_pieces = [data[i : i + 7919] for i in range(0, size, 7919)]
    assert import_file(io.BytesIO(data), discard).cid == expected
    assert import_file(ShortReads(data, seed=size), discard).cid == expected
    assert import_file(io.BufferedReader(ShortReads(data, seed=size)), discard).cid == expected
    assert import_file(odd_pieces, discard).cid == expected
    assert import_file([bytearray(data), b""], discard).cid == expected


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, 2 * CHUNK_SIZE + 1])
def test_file_objects_are_read_into_the_leaves_and_give_the_same_blocks(
    tmp_path: Path, size: int
) -> None:
    """A file is read straight into each full leaf's buffer, which put then keeps (a
    bytearray, never written again); every block equals what the bytes path builds."""
    data = random.Random(size).randbytes(size)
    (tmp_path / "f").write_bytes(data)
    from_bytes, from_file = MemoryStore(), MemoryStore()
    expected = import_file(data, from_bytes.put)
    with (tmp_path / "f").open("rb") as fh:
        assert import_file(fh, from_file.put) == expected
    assert from_file.blocks == from_bytes.blocks
    full_leaves = [b for b in from_file.blocks.values() if len(b) > CHUNK_SIZE]
    assert len(full_leaves) == size // CHUNK_SIZE
    assert all(isinstance(b, bytearray) for b in full_leaves)


def test_leaf_buffers_are_filled_again_only_once_nobody_holds_them() -> None:
    buffers = _leaf_buffers(8)
    released = next(buffers)
    released[:] = b"released"
    del released
    newer = next(buffers)  # the generator itself still held the released one a moment ago
    assert newer == bytes(8)
    kept = next(buffers)
    assert kept == b"released"  # the same buffer again, not a zeroed new one
    kept[:] = b"kept!!!!"
    for _ in range(5):
        assert next(buffers) is not kept
    assert kept == b"kept!!!!"


def test_reused_leaf_buffers_give_the_same_dag(tmp_path: Path) -> None:
    """A put that keeps nothing lets the importer refill its buffers; every block it saw
    was right when it saw it and the root is the bytes path's."""
    data = random.Random(7).randbytes(12 * CHUNK_SIZE + 3)
    (tmp_path / "f").write_bytes(data)

    def check(cid: bytes, block: bytes, children: list[bytes]) -> None:
        assert verify(cid, block)

    with (tmp_path / "f").open("rb") as fh:
        assert import_file(fh, check) == import_file(data, discard)


@pytest.mark.parametrize("size", [0, 5, CHUNK_SIZE, CHUNK_SIZE * 3 + 5, CHUNK_SIZE * 175 + 5])
def test_read_file_round_trip(size: int) -> None:
    data = random.Random(size).randbytes(size)
    store = MemoryStore()
    result = import_file(data, store.put)
    pieces = list(read_file(store.get, result.cid))
    assert b"".join(pieces) == data
    assert all(len(piece) <= CHUNK_SIZE for piece in pieces)
    assert file_size(store.get, result.cid) == size == result.size
    assert node_kind(store.get, result.cid) == "file"
    assert sorted(dag_cids(store.get, result.cid)) == sorted(store.blocks)
    assert next(dag_cids(store.get, result.cid)) == result.cid


def test_progress_and_cancel() -> None:
    seen: list[int] = []
    import_file(pattern_chunks(3, last=10), discard, progress=seen.append)
    assert seen == [CHUNK_SIZE, 2 * CHUNK_SIZE, 2 * CHUNK_SIZE + 10]
    calls = iter([False, False, True])
    with pytest.raises(ImportCancelled):
        import_file(pattern_chunks(5), discard, cancelled=lambda: next(calls))


# --- other nodes' blocks ----------------------------------------------------------------------


def test_raw_codec_and_identity_blocks() -> None:
    data = b"raw leaf bytes"
    raw_cid = bytes((1, RAW)) + cid_v0(data)
    store = MemoryStore()
    store.blocks[raw_cid] = data
    assert node_kind(store.get, raw_cid) == "file"
    assert b"".join(read_file(store.get, raw_cid)) == data
    assert file_size(store.get, raw_cid) == len(data)
    assert verify(raw_cid, data) and not verify(raw_cid, data + b"!")
    identity = bytes((1, RAW, 0x00, len(data))) + data
    assert verify(identity, data) and not verify(identity, b"other")
    assert b"".join(read_file(store.get, identity)) == data
    assert list(dag_cids(store.get, identity)) == []
    # a dag-pb file whose leaves are raw blocks, as kubo --raw-leaves writes
    unixfs = UnixFSData(DataType.FILE, filesize=2 * len(data), blocksizes=[len(data)] * 2)
    root = PBNode([Link("", raw_cid, len(data))] * 2, unixfs.encode()).encode()
    root_cid = cid_v1_dagpb(root)
    store.blocks[root_cid] = root
    assert b"".join(read_file(store.get, root_cid)) == data * 2


def test_kubo_basic_directory_vector() -> None:
    """kubo cid_profiles_test.go unixfs-v0-2015 DirBasicCID: 4096 files named by
    createDeterministicFiles (30 chars each, seed hamt-unixfs-v0-2015), each holding "x".
    Building the block as Go does proves we read such directories as they are written."""
    names = deterministic_names(4096, 30)
    store = MemoryStore()
    x = import_file(b"x", store.put, cid_version=0)
    links = [Link(name, x.cid, x.tsize) for name in sorted(names)]
    block = PBNode(links, UnixFSData(DataType.DIRECTORY).encode()).encode()
    assert cid_str(cid_v0(block)) == "QmX5GtRk3TSSEHtdrykgqm4eqMEn3n2XhfkFAis5fjyZmN"
    store.blocks[cid_v0(block)] = block
    assert node_kind(store.get, cid_v0(block)) == "directory"
    listing = list_basic_directory(store.get, cid_v0(block))
    assert sorted(listing) == sorted(names) and listing[names[0]] == Link(names[0], x.cid, 9)


def deterministic_names(count: int, length: int) -> list[str]:
    """kubo's createDeterministicFiles names: ChaCha20 bytes mapped onto AlphabetEasy."""
    alphabet = "abcdefghijklmnopqrstuvwxyz01234567890-_"
    stream = b"".join(chacha20_stream(1 << 20, "hamt-unixfs-v0-2015"))
    return [
        "".join(alphabet[b % len(alphabet)] for b in stream[i * length : (i + 1) * length])
        for i in range(count)
    ]


# --- malformed input --------------------------------------------------------------------------


def test_missing_and_malformed_blocks() -> None:
    store = MemoryStore()
    result = import_file(b"a" * (CHUNK_SIZE + 5), store.put)
    leaf = PBNode.decode(store.blocks[result.cid]).links[1].cid
    del store.blocks[leaf]
    with pytest.raises(MissingBlock) as caught:
        b"".join(read_file(store.get, result.cid))
    assert caught.value.cid == leaf

    store.blocks[leaf] = import_and_get(b"b" * 6)  # a valid leaf of the wrong size
    with pytest.raises(UnixFSError, match="parent expects 5"):
        b"".join(read_file(store.get, result.cid))

    bad_sizes = PBNode([Link("", leaf, 1)], UnixFSData(DataType.FILE, filesize=5).encode())
    garbage = b"\x0a\xff\xff"
    directory = PBNode([], UnixFSData(DataType.DIRECTORY).encode())
    for block, message in [
        (garbage, "truncated|past the end"),
        (bad_sizes.encode(), "1 links but 0 blocksizes"),
        (directory.encode(), "expected a file"),
        (PBNode([], None).encode(), "without UnixFS data"),
        (PBNode([], b"\x08\x09").encode(), "unknown UnixFS type"),
    ]:
        cid = cid_v1_dagpb(block)
        store.blocks[cid] = block
        with pytest.raises(UnixFSError, match=message):
            b"".join(read_file(store.get, cid))
    with pytest.raises(UnixFSError, match="expected a directory"):
        list_basic_directory(store.get, result.cid)


def import_and_get(data: bytes) -> bytes:
    store = MemoryStore()
    return store.blocks[import_file(data, store.put).cid]


def test_unixfs_data_decoding() -> None:
    encoded = UnixFSData(DataType.FILE, filesize=10, blocksizes=[4, 6]).encode()
    assert encoded == bytes.fromhex("0802180a20042006")
    packed = bytes.fromhex("0802180a22020406")
    assert UnixFSData.decode(packed).blocksizes == [4, 6]
    with_mode_mtime = encoded + bytes.fromhex("38a403420408011000")
    assert UnixFSData.decode(with_mode_mtime) == UnixFSData.decode(encoded)
    for bad in [b"", b"\x18\x01", b"\x0a\x00", b"\x08", b"\x08\x02\x1b", b"\x00\x00"]:
        with pytest.raises(UnixFSError):
            UnixFSData.decode(bad)


# --- dag-pb and CIDs --------------------------------------------------------------------------


def test_dagpb_encoding_matches_go() -> None:
    child = cid_v1_dagpb(b"child")
    node = PBNode([Link("", child, 7)], b"\x08\x02")
    assert node.encode() == b"\x12\x2a\x0a\x24" + child + b"\x12\x00\x18\x07\x0a\x02\x08\x02"
    assert PBNode.decode(node.encode()) == node
    assert PBNode.decode(b"") == PBNode([], None)
    # Go accepts Data before Links and links without Name/Tsize
    assert PBNode.decode(b"\x0a\x00\x12\x24\x0a\x22" + cid_v0(b"c")) == PBNode(
        [Link("", cid_v0(b"c"), 0)], b""
    )
    odd_name = Link("caf\udce9", child, 1)  # a non-UTF-8 name byte survives the round trip
    assert PBNode.decode(PBNode([odd_name]).encode()).links == [odd_name]


@pytest.mark.parametrize(
    "block",
    [
        b"\x0a\x00\x0a\x00",  # duplicate Data
        b"\x12\x24\x0a\x22" + bytes(34) + b"\x0a\x00\x12\x00",  # Links split around Data
        b"\x1a\x00",  # unknown field
        b"\x08\x01",  # wrong wire type
        b"\x12\x00",  # link without Hash
        b"\x12\x04\x12\x00\x0a\x00",  # Name before Hash
        b"\x12\x02\x0a\x00",  # Hash that is not a CID
        b"\x0a\x05abc",  # truncated
        b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # overlong varint
    ],
)
def test_dagpb_rejects_what_go_rejects(block: bytes) -> None:
    with pytest.raises(DagPBError):
        PBNode.decode(block)


def test_decoders_only_raise_value_errors_on_garbage() -> None:
    """Mutated and truncated real blocks: each decoder fails only with its documented error."""
    rng = random.Random(7)
    store = MemoryStore()
    import_file(pattern_chunks(3, last=300), store.put)
    samples = [b for b in store.blocks.values() if len(b) < 2000]
    samples += [PBNode([Link("n\u00e9", cid_v0(b"x"), 3)], b"\x08\x05").encode()]
    for _ in range(3000):
        block = bytearray(rng.choice(samples))
        for _ in range(rng.randint(1, 4)):
            block[rng.randrange(len(block))] = rng.randrange(256)
        block = block[: rng.randint(0, len(block))]
        try:
            node = PBNode.decode(bytes(block))
        except DagPBError:
            continue
        if node.data is not None:
            try:
                UnixFSData.decode(node.data)
            except UnixFSError:
                pass


def test_cid_text_forms() -> None:
    cid_module = pytest.importorskip("cid")
    for text in [
        "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
        "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby",
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
    ]:
        binary = parse_cid(text)
        assert binary == cid_module.make_cid(text).buffer
        assert cid_str(binary) == text
        assert parse_cid(binary) == binary
    v1 = parse_cid("bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby")
    assert parse_cid("B" + cid_str(v1)[1:].upper()) == v1
    assert parse_cid("f" + v1.hex()) == v1
    assert parse_cid(" " + cid_str(v1) + "\n") == v1
    assert cid_parts(v1) == (1, DAG_PB, 0x12, v1[4:])


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "hello",
        "Qm" + "1" * 44,
        "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5O",
        "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mb",
        "b!!!",
        "z0OIl",
        "f0170",
        "x" * 10_000,
        b"",
        b"\x01",
        b"\x02\x70\x12\x20" + bytes(32),
        b"\x01\x70\x12\x21" + bytes(32),
        b"\x01\x80\x00\x12\x20" + bytes(32),
        42,
    ],
)
def test_parse_cid_rejects_garbage(garbage: object) -> None:
    with pytest.raises(ValueError):
        parse_cid(garbage)  # type: ignore[arg-type]


def test_verify_rejects_unknown_hash_functions() -> None:
    blake3 = bytes((1, DAG_PB, 0x1E, 32)) + bytes(32)  # no blake3 in hashlib
    with pytest.raises(DagPBError, match="unsupported multihash"):
        verify(blake3, b"")
    blake2b = bytes((1, DAG_PB, 0xA0, 0xE4, 0x02, 32))  # 0xb220 blake2b-256: checked
    digest = hashlib.blake2b(b"abc", digest_size=32).digest()
    assert verify(blake2b + digest, b"abc") and not verify(blake2b + digest, b"abd")
    assert verify(cid_v0(b"abc"), b"abc") and not verify(cid_v0(b"abc"), b"abd")
