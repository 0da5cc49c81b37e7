"""HAMT directories: Go-published root CIDs, canonical shape, lazy loading, bad shards."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from core.ipfs import hamt
from core.ipfs.dagpb import RAW, Link, PBNode, cid_str, cid_v0, cid_v1_dagpb, parse_cid
from core.ipfs.hamt import HamtDirectory, HamtError
from core.ipfs.unixfs import DataType, MissingBlock, UnixFSData, import_file, node_kind, read_file
from tests.core.ipfs.test_unixfs import MemoryStore, deterministic_names

EMPTY_SHARD = "Qma5kEnM5fEKTXrFC5zXYRy5QG3hcMWopoFS7ijhxx19qc"
FILE_CID = cid_v1_dagpb(b"some file")


def add_file(
    store: MemoryStore, directory: HamtDirectory, name: str, content: bytes, version: int = 1
) -> None:
    result = import_file(content, store.put, cid_version=version)  # type: ignore[arg-type]
    directory.set(name, result.cid, result.tsize)


def build(names: list[str]) -> tuple[bytes, MemoryStore]:
    store = MemoryStore()
    store.blocks[FILE_CID] = b"some file"  # the one file every entry points to
    directory = HamtDirectory.empty(store.get)
    for name in names:
        directory.set(name, FILE_CID, len(name))
    return directory.flush(store.put)[0], store


def names_of(count: int) -> list[str]:
    return [f"entry-{i:06d}.bin" for i in range(count)]


# --- published vectors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "h1"),
    [
        ("a", "85555565f6597889"),
        ("hello", "cbd8a7b341bd9b02"),
        ("README.md", "a8a6341bf24bc1bd"),
        ("", "0000000000000000"),
    ],
)
def test_murmur3_samples(name: str, h1: str) -> None:
    assert hamt._hash(name.encode()).hex() == h1


def test_empty_shard_vector() -> None:
    store = MemoryStore()
    root, tsize = HamtDirectory.empty(store.get).flush(store.put)
    assert cid_str(root) == EMPTY_SHARD
    assert store.blocks[root] == bytes.fromhex("0a0708052822308002")
    assert tsize == 9
    assert node_kind(store.get, root) == "hamt"


def test_spec_shard_vectors() -> None:
    store = MemoryStore()
    directory = HamtDirectory.empty(store.get)
    add_file(store, directory, "file-00000.txt", b"content of file-00000.txt\n")
    root, _ = directory.flush(store.put)
    assert cid_str(root) == "QmcQBc3DyATRrgpfd9iEAQRNXogtCSc9XNA6YrSVvGA1V4"
    for i in range(1, 10):
        add_file(store, directory, f"file-{i:05d}.txt", f"content of file-{i:05d}.txt\n".encode())
    root, _ = directory.flush(store.put)
    assert cid_str(root) == "QmXpEGzHDTeue43q5vqjXVXJR8dj5nHZfbj6fHZoTPEFzv"


def test_kubo_t0260_sharded_directory() -> None:
    """kubo test/sharness/t0260-sharding.sh: `ipfs add -r` (CIDv0 files, dag-pb leaves) of
    file1..file2000 holding "$i\\n", with sharding forced on. 2000 names in 256 buckets,
    so the root has many sub-shards."""
    store = MemoryStore()
    directory = HamtDirectory.empty(store.get)
    for i in range(1, 2001):
        add_file(store, directory, f"file{i}", f"{i}\n".encode(), version=0)
    root, _ = directory.flush(store.put)
    assert cid_str(root) == "QmSCJD1KYLhVVHqBK3YyXuoEqHt7vggyJhzoFYbT8v1XYL"
    loaded = HamtDirectory.load(store.get, root)
    link = loaded.lookup("file100")
    assert link is not None
    assert cid_str(link.cid) == "QmZ3RfWk1u5LEGYLHA633B5TNJy3Du27K6Fny9wcxpowGS"
    assert b"".join(read_file(store.get, link.cid)) == b"100\n"


def test_kubo_profile_hamt_directory() -> None:
    """kubo test/cli/cid_profiles_test.go, unixfs-v0-2015 DirHAMTCID: 4033 files with
    31-character deterministic names, each holding "x"."""
    store = MemoryStore()
    x = import_file(b"x", store.put, cid_version=0)
    directory = HamtDirectory.empty(store.get)
    for name in deterministic_names(4033, 31):
        directory.set(name, x.cid, x.tsize)
    root, _ = directory.flush(store.put)
    assert cid_str(root) == "QmeMiJzmhpJAUgynAcxTQYek5PPKgdv3qEvFsdV3XpVnvP"


# --- canonical shape --------------------------------------------------------------------------


def test_shape_depends_only_on_the_set_of_names() -> None:
    names = names_of(10_000)
    forward, store = build(names)
    shuffled = names[:]
    random.Random(1).shuffle(shuffled)
    assert build(shuffled)[0] == forward
    root = PBNode.decode(store.blocks[forward])
    assert len(root.links) == 256 and all(len(link.name) == 2 for link in root.links)

    # insert extra names, then remove them in another order: same root as never added
    directory = HamtDirectory.load(store.get, forward)
    extra = [f"extra-{i}" for i in range(3000)]
    for name in extra:
        directory.set(name, FILE_CID, 1)
    random.Random(2).shuffle(extra)
    for name in extra:
        assert directory.remove(name)
    assert directory.flush(store.put)[0] == forward
    assert len(directory) == 10_000


def test_emptied_directory_returns_to_empty_shard() -> None:
    names = names_of(2000)
    root, store = build(names)
    directory = HamtDirectory.load(store.get, root)
    random.Random(3).shuffle(names)
    for name in names:
        assert directory.remove(name)
    assert not directory.remove(names[0])
    assert len(directory) == 0 and list(directory.items()) == []
    assert cid_str(directory.flush(store.put)[0]) == EMPTY_SHARD


def fake_hashes(monkeypatch: pytest.MonkeyPatch, table: dict[str, str]) -> None:
    """Give chosen names chosen 64-bit hashes (hex), to force deep collisions."""
    real = hamt._hash

    def fake(key: bytes) -> bytes:
        name = key.decode()
        return bytes.fromhex(table[name]) if name in table else real(key)

    monkeypatch.setattr(hamt, "_hash", fake)


def shard_names(store: MemoryStore, cid: bytes) -> list[str]:
    return [link.name for link in PBNode.decode(store.blocks[cid]).links]


def test_collision_chain_and_collapse(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_hashes(
        monkeypatch, {"a": "0102030400000000", "b": "0102030500000000", "c": "0106000000000000"}
    )
    root, store = build(["a", "b", "c"])
    assert shard_names(store, root) == ["01"]
    level1 = PBNode.decode(store.blocks[root]).links[0].cid
    assert shard_names(store, level1) == ["02", "06c"]
    level2 = PBNode.decode(store.blocks[level1]).links[0].cid
    assert shard_names(store, level2) == ["03"]
    level3 = PBNode.decode(store.blocks[level2]).links[0].cid
    assert shard_names(store, level3) == ["04a", "05b"]

    # boxo keeps a sub-shard whose only child is a sub-shard (it still holds two entries):
    # removing "c" leaves exactly the tree that {"a", "b"} builds from scratch
    directory = HamtDirectory.load(store.get, root)
    assert directory.remove("c")
    assert directory.flush(store.put)[0] == build(["a", "b"])[0]
    # removing "b" folds "a" all the way up into the root
    assert directory.remove("b")
    root_a, _ = directory.flush(store.put)
    assert root_a == build(["a"])[0]
    assert shard_names(store, root_a) == ["01a"]


def test_full_hash_collision_is_too_deep(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_hashes(monkeypatch, {"a": "0102030405060708", "b": "0102030405060708"})
    store = MemoryStore()
    directory = HamtDirectory.empty(store.get)
    directory.set("a", FILE_CID, 1)
    with pytest.raises(HamtError, match="sharded directory too deep"):
        directory.set("b", FILE_CID, 1)
    assert [name for name, _ in directory.items()] == ["a"]  # unchanged by the failure


def test_set_replaces_and_skips_unchanged() -> None:
    names = names_of(300)
    root, store = build(names)
    directory = HamtDirectory.load(store.get, root)
    directory.set(names[5], FILE_CID, len(names[5]))  # identical: nothing to write
    puts = len(store.puts)
    assert directory.flush(store.put)[0] == root and len(store.puts) == puts
    other = cid_v0(b"other")
    store.blocks[other] = b"other"
    directory.set(names[5], other, 77)
    assert len(directory) == 300
    new_root, _ = directory.flush(store.put)
    assert new_root != root
    assert HamtDirectory.load(store.get, new_root).lookup(names[5]) == Link(names[5], other, 77)


def test_odd_names_round_trip() -> None:
    names = [
        "héllo wörld.txt",
        "日本語",
        " leading space",
        "emoji-🙂",
        "a" * 255,
        "tab\there",
        "non-utf8-\udcff",
        "00",
        "FF",
    ]
    root, store = build(names)
    loaded = HamtDirectory.load(store.get, root)
    assert sorted(name for name, _ in loaded.items()) == sorted(names)
    for name in names:
        assert loaded.lookup(name) == Link(name, FILE_CID, len(name))
    assert loaded.lookup("absent") is None
    for bad in ["", "\ud800"]:
        with pytest.raises(ValueError):
            loaded.set(bad, FILE_CID, 1)


def test_nested_directories() -> None:
    store = MemoryStore()
    inner = HamtDirectory.empty(store.get)
    add_file(store, inner, "notes.txt", b"nested content\n")
    inner_root, inner_tsize = inner.flush(store.put)
    outer = HamtDirectory.empty(store.get)
    outer.set("docs", inner_root, inner_tsize)
    add_file(store, outer, "top.txt", b"top\n")
    root, tsize = outer.flush(store.put)
    assert tsize == len(store.blocks[root]) + sum(
        link.tsize for link in PBNode.decode(store.blocks[root]).links
    )

    docs = HamtDirectory.load(store.get, root).lookup("docs")
    assert docs is not None and docs.tsize == inner_tsize
    assert node_kind(store.get, docs.cid) == "hamt"
    notes = HamtDirectory.load(store.get, docs.cid).lookup("notes.txt")
    assert notes is not None
    assert b"".join(read_file(store.get, notes.cid)) == b"nested content\n"


# --- lazy loading and incremental flush -------------------------------------------------------


@pytest.fixture(scope="module")
def big_directory() -> tuple[bytes, MemoryStore]:
    return build(names_of(100_000))


def counting(
    get: Callable[[bytes], bytes | None], seen: list[bytes]
) -> Callable[[bytes], bytes | None]:
    def wrapped(cid: bytes) -> bytes | None:
        seen.append(cid)
        return get(cid)

    return wrapped


@pytest.mark.timeout(60)
def test_100k_round_trip(big_directory: tuple[bytes, MemoryStore]) -> None:
    root, store = big_directory
    loaded = HamtDirectory.load(store.get, root)
    assert sorted(name for name, _ in loaded.items()) == names_of(100_000)
    assert len(loaded) == 100_000


@pytest.mark.timeout(60)
def test_100k_update_rewrites_only_its_path(big_directory: tuple[bytes, MemoryStore]) -> None:
    root, store = big_directory
    reads: list[bytes] = []
    directory = HamtDirectory.load(counting(store.get, reads), root)
    assert directory.lookup("entry-054321.bin") == Link("entry-054321.bin", FILE_CID, 16)
    depth = len(reads)
    assert 2 <= depth <= 4, "a lookup reads only the shards on its path"

    writes = MemoryStore()
    writes.blocks = dict(store.blocks)
    directory.set("a-new-name", FILE_CID, 1)
    new_root, _ = directory.flush(writes.put)
    assert 1 <= len(writes.puts) <= 4
    assert writes.puts[-1] == new_root
    assert HamtDirectory.load(writes.get, new_root).lookup("a-new-name") is not None
    assert len(directory) == 100_001


# --- malformed shards -------------------------------------------------------------------------


def shard_block(
    links: list[Link],
    bitfield: bytes | None,
    *,
    hash_type: int = 0x22,
    fanout: int = 256,
    kind: DataType = DataType.HAMT_SHARD,
) -> bytes:
    data = UnixFSData(kind, data=bitfield, hash_type=hash_type, fanout=fanout)
    return PBNode(links, data.encode()).encode()


def entry_link(name: str) -> tuple[int, Link]:
    bucket = hamt._hash(name.encode())[0]
    return bucket, Link(f"{bucket:02X}{name}", FILE_CID, 5)


def bitfield_for(*buckets: int) -> bytes:
    bits = sum(1 << b for b in buckets)
    return bits.to_bytes((bits.bit_length() + 7) // 8, "big")


def test_malformed_shards_are_rejected() -> None:
    bucket, link = entry_link("hello")
    other_bucket = (bucket + 1) % 256
    cases = {
        "unsupported HAMT fanout": shard_block([link], bitfield_for(bucket), fanout=128),
        "unsupported HAMT hash type": shard_block([link], bitfield_for(bucket), hash_type=0x11),
        "does not match bucket": shard_block([link], bitfield_for(other_bucket)),
        "bitfield sets 2 buckets": shard_block([link], bitfield_for(bucket, other_bucket)),
        "wrong bucket": shard_block(
            [Link(f"{other_bucket:02X}hello", FILE_CID, 5)], bitfield_for(other_bucket)
        ),
        "longer than the fanout": shard_block([], bytes(33)),
        "expected a HAMT shard": shard_block([], None, kind=DataType.DIRECTORY),
        "without UnixFS data": PBNode([], None).encode(),
        "truncated|past the end": b"\x0a\x09\x08",
    }
    for message, block in cases.items():
        store = MemoryStore()
        store.blocks[cid_v0(block)] = block
        with pytest.raises(HamtError, match=message):
            HamtDirectory.load(store.get, cid_v0(block))
    raw_cid = bytes((1, RAW)) + cid_v0(block)  # a valid shard's bytes, but a raw-codec CID
    store.blocks[raw_cid] = shard_block([link], bitfield_for(bucket))
    with pytest.raises(HamtError, match="must be a dag-pb block"):
        HamtDirectory.load(store.get, raw_cid)


def test_well_formed_foreign_shard_loads() -> None:
    bucket, link = entry_link("hello")
    block = shard_block([link], bitfield_for(bucket))
    store = MemoryStore()
    store.blocks[cid_v0(block)] = block
    assert cid_v0(block) == build(["hello"])[0]
    directory = HamtDirectory.load(store.get, cid_v0(block))
    assert directory.lookup("hello") == Link("hello", FILE_CID, 5)


def test_missing_sub_shard_and_root() -> None:
    root, store = build(names_of(1000))
    sub = next(link.cid for link in PBNode.decode(store.blocks[root]).links if len(link.name) == 2)
    del store.blocks[sub]
    directory = HamtDirectory.load(store.get, root)
    with pytest.raises(MissingBlock) as caught:
        list(directory.items())
    assert caught.value.cid == sub
    with pytest.raises(MissingBlock):
        HamtDirectory.load(store.get, parse_cid(EMPTY_SHARD))
