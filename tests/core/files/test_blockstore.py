"""Block store: pins, GC by reachability, sessions, and failure behaviour for real.

Failures are produced, not mocked: a full disk is a small tmpfs filled to the brim, an
unwritable folder is a read-only mount (tests run as root, where chmod 0500 stops
nothing), and a crash is SIGKILL on a child process in the middle of its writes.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from core.files import blockstore
from core.files.blockstore import BlockStore, GcStats, StoreError

REPO = Path(__file__).resolve().parents[3]
CHUNK = 256 * 1024


def cid_of(data: bytes) -> bytes:
    """A CIDv0-shaped id: sha2-256 multihash of the data."""
    return b"\x12\x20" + hashlib.sha256(data).digest()


def put_file(
    target: BlockStore | blockstore.Session | blockstore.Batch, chunks: list[bytes]
) -> bytes:
    """Store chunks under one parent node (like a UnixFS file) and return its CID."""
    links = [cid_of(chunk) for chunk in chunks]
    for cid, chunk in zip(links, chunks, strict=True):
        target.put(cid, chunk, [])
    node = b"node:" + b"".join(links)
    target.put(cid_of(node), node, links)
    return cid_of(node)


def put_dir(
    target: BlockStore | blockstore.Session | blockstore.Batch, children: list[bytes]
) -> bytes:
    node = b"dir:" + b"".join(children)
    target.put(cid_of(node), node, children)
    return cid_of(node)


def assert_sound(path: Path) -> None:
    """SQLite's own integrity check passes, no stored block is torn or mislabelled (packed
    data read from its pack, independently of the store's code), and every pack file is
    named by a row."""
    packs = path.with_name(path.name + "-packs")
    named = set()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        for cid, data, pack, at, size in raw.execute(
            "SELECT cid, data, pack, at, size FROM blocks"
        ):
            if pack is not None:
                named.add(f"{pack:08d}.pack")
                with (packs / f"{pack:08d}.pack").open("rb") as fh:
                    fh.seek(at)
                    data = fh.read(size)
            assert len(data) == size
            if cid.startswith(b"\x12\x20"):
                assert cid == cid_of(data)
    raw.close()
    on_disk = {f.name for f in packs.iterdir()} if packs.exists() else set()
    assert on_disk == named, f"packs nobody names: {sorted(on_disk - named)}"


def run(*cmd: str) -> bool:
    return subprocess.run(cmd, capture_output=True).returncode == 0


@contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    where.mkdir()
    if not run("mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield where
    finally:
        run("umount", "-l", str(where))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BlockStore]:
    with BlockStore(tmp_path / "profile" / "blocks.db") as opened:
        yield opened


# -- basics --------------------------------------------------------------------------------


def test_put_get_has_and_idempotent_put(store: BlockStore) -> None:
    data = b"hello"
    store.put(cid_of(data), data, [])
    store.put(cid_of(data), data, [])
    assert store.get(cid_of(data)) == data
    assert store.has(cid_of(data))
    assert store.get(cid_of(b"other")) is None
    assert not store.has(cid_of(b"other"))
    assert store.stats() == (1, len(data))


def test_root_persists_across_restart(tmp_path: Path) -> None:
    path = tmp_path / "blocks.db"
    with BlockStore(path) as first:
        root = put_file(first, [b"a" * 100, b"b" * 100])
        first.set_root("files", root)
    with BlockStore(path) as second:
        assert second.get_root("files") == root
        assert second.roots() == {"files": root}
        assert second.missing(root) == []
        second.set_root("files", None)
        assert second.get_root("files") is None
        assert second.roots() == {}


def test_set_root_refuses_a_missing_block(store: BlockStore) -> None:
    root = put_file(store, [b"x"])
    store.set_root("files", root)
    with pytest.raises(StoreError, match="not in the store"):
        store.set_root("files", cid_of(b"never stored"))
    assert store.get_root("files") == root


def test_closed_store_raises(tmp_path: Path) -> None:
    opened = BlockStore(tmp_path / "blocks.db")
    opened.close()
    with pytest.raises(StoreError, match="closed"):
        opened.get(b"x")


# -- garbage collection --------------------------------------------------------------------


def test_gc_frees_removed_file_and_old_directory_but_keeps_shared_blocks(
    store: BlockStore,
) -> None:
    shared = b"s" * 1000
    file_a = put_file(store, [shared, b"a" * 1000])
    file_b = put_file(store, [shared, b"b" * 1000])
    dir_v1 = put_dir(store, [file_a, file_b])
    store.set_root("files", dir_v1)
    assert store.gc() == GcStats(0, 0)

    dir_v2 = put_dir(store, [file_a])  # remove file_b
    store.set_root("files", dir_v2)
    freed = [b"b" * 1000, store.get(file_b), store.get(dir_v1)]
    assert store.gc() == GcStats(3, sum(len(block) for block in freed if block))

    assert store.get(cid_of(shared)) == shared
    assert store.missing(dir_v2) == []
    assert not store.has(file_b)
    assert not store.has(dir_v1)


def test_same_file_under_two_names_survives_removing_one(store: BlockStore) -> None:
    file_a = put_file(store, [b"same" * 100])
    store.set_root("files", put_dir(store, [file_a, file_a]))
    store.set_root("files", put_dir(store, [file_a]))
    store.gc()
    assert store.missing(store.get_root("files") or b"") == []


def test_gc_tolerates_links_to_blocks_not_fetched_yet(store: BlockStore) -> None:
    absent = cid_of(b"still on a remote peer")
    root = put_dir(store, [absent])
    store.set_root("remote", root)
    store.put(cid_of(b"junk"), b"junk", [absent])
    assert store.gc() == GcStats(1, 4)
    assert store.missing(root) == [absent]


def test_blocks_of_an_unfinished_import_are_collected_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "blocks.db"
    with BlockStore(path) as first:
        keep = put_file(first, [b"kept"])
        first.set_root("files", keep)
        with first.session() as session, session.batch() as batch:
            put_file(batch, [b"orphan 1", b"orphan 2"])  # never pinned: the "crash"
    with BlockStore(path) as second:
        assert second.gc().blocks == 3
        assert second.stats() == (2, len(b"kept") + len(second.get(keep) or b""))


def test_gc_of_100k_blocks_is_fast(store: BlockStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blockstore, "BATCH_BLOCKS", 20_000)  # fill quickly; gc is under test
    tops = []
    with store.batch() as batch:
        for i in range(1000):
            kids = [b"\x01\x55" + (i * 100 + j).to_bytes(8, "big") for j in range(100)]
            for kid in kids:
                batch.put(kid, kid, [])
            tops.append(put_dir(batch, kids))
    store.set_root("files", put_dir(store, tops[:500]))
    started = time.perf_counter()
    freed = store.gc()
    elapsed = time.perf_counter() - started
    assert freed.blocks == 500 * 101
    assert store.stats()[0] == 500 * 101 + 1
    assert elapsed < 3.0, f"gc of 101 000 blocks took {elapsed:.2f}s"


# -- batches and sessions ------------------------------------------------------------------


def test_batch_commits_in_chunks_and_drops_the_uncommitted_part(store: BlockStore) -> None:
    blocks = [i.to_bytes(4, "big") * 8 for i in range(blockstore.BATCH_BLOCKS + 10)]
    with pytest.raises(RuntimeError), store.batch() as batch:
        for block in blocks:
            batch.put(cid_of(block), block, [])
        raise RuntimeError("importer failed")
    assert store.stats()[0] == blockstore.BATCH_BLOCKS
    assert not store.has(cid_of(blocks[-1]))


def test_batch_copies_mutable_buffers(store: BlockStore) -> None:
    buffer = bytearray(b"original")
    with store.batch() as batch:
        batch.put(b"cid", buffer, [])  # type: ignore[arg-type]
        buffer[:] = b"changed!"
    assert store.get(b"cid") == b"original"


def test_batch_keeps_owned_buffers_as_they_are(store: BlockStore) -> None:
    """put_owned queues the caller's buffer itself (the importer's leaves: no copy), and the
    commit stores its bytes."""
    buffer = bytearray(b"leaf bytes")
    with store.batch() as batch:
        batch.put_owned(b"cid", buffer, [])
        assert batch._pending[0][1] is buffer
    assert store.get(b"cid") == b"leaf bytes"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_write_behind_runs_only_while_a_batch_commits(store: BlockStore) -> None:
    """While a batch has commits in flight a thread starts the kernel's write-back of the WAL
    and the database file; it ends with the batch."""

    def write_behind() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "blockstore-write-behind"]

    assert blockstore._sync_file_range is not None
    blob = os.urandom(CHUNK)
    with store.session() as session, session.batch() as batch:
        for i in range(blockstore.BATCH_BLOCKS + 1):
            batch.put(cid_of(blob + i.to_bytes(4, "big")), blob + i.to_bytes(4, "big"), [])
        assert len(write_behind()) == 1
    assert write_behind() == []
    assert store.stats()[0] == blockstore.BATCH_BLOCKS + 1
    assert_sound(store.path)


def test_batch_throughput(store: BlockStore) -> None:
    """A smoke bound far below the ~350 MB/s measured here, so slow CI disks pass too."""
    chunks = [i.to_bytes(8, "big") + bytes(CHUNK - 8) for i in range(128)]
    started = time.perf_counter()
    with store.batch() as batch:
        put_file(batch, chunks)
    rate = len(chunks) * CHUNK / (time.perf_counter() - started) / 1e6
    assert rate > 50, f"{rate:.0f} MB/s"


def test_session_protects_its_blocks_and_what_they_link_to(store: BlockStore) -> None:
    old_file = put_file(store, [b"unchanged sibling"])
    store.set_root("files", put_dir(store, [old_file]))
    with store.session() as session:
        new_file = put_file(session, [b"being imported"])
        new_dir = put_dir(session, [old_file, new_file])
        store.set_root("files", None)  # an unrelated remove unpins everything...
        store.gc()  # ...and collects while the import is still running
        assert store.missing(new_dir) == []
        store.set_root("files", new_dir)
    store.gc()
    assert store.missing(new_dir) == []


def test_session_blocks_are_collectable_once_the_session_ends(store: BlockStore) -> None:
    with store.session() as session, session.batch() as batch:
        put_file(batch, [b"abandoned"])
    assert store.gc().blocks == 2


def test_imports_and_gc_from_many_threads(store: BlockStore) -> None:
    errors: list[BaseException] = []

    def importer(name: str) -> None:
        try:
            for round_ in range(15):
                with store.session() as session:
                    with session.batch() as batch:
                        chunks = [f"{name} {round_} {i}".encode() * 50 for i in range(8)]
                        root = put_file(batch, chunks)
                    store.set_root(name, root)  # inside the session: GC may run any time
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    def collector(stop: threading.Event) -> None:
        while not stop.is_set():
            store.gc()

    stop = threading.Event()
    gc_thread = threading.Thread(target=collector, args=(stop,))
    workers = [threading.Thread(target=importer, args=(f"r{i}",)) for i in range(4)]
    gc_thread.start()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stop.set()
    gc_thread.join()
    assert errors == []
    for root in store.roots().values():
        assert store.missing(root) == []
    store.gc()
    assert store.stats()[0] == 4 * 9


def test_reads_do_not_wait_for_an_open_write_transaction(store: BlockStore) -> None:
    root = put_file(store, [b"visible"])
    store.set_root("files", root)
    writer = sqlite3.connect(store.path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # holds the write lock, like a long import commit
        writer.execute("DELETE FROM pins")
        started = time.perf_counter()
        assert store.get_root("files") == root
        assert store.get(root) is not None
        assert time.perf_counter() - started < 1.0
    finally:
        writer.execute("ROLLBACK")
        writer.close()


# -- failures: damaged file, unwritable folder, full disk ----------------------------------


def test_not_a_database_is_reported_as_damaged(tmp_path: Path) -> None:
    path = tmp_path / "blocks.db"
    path.write_bytes(b"this is not an SQLite file" * 100)
    with pytest.raises(StoreError, match="is damaged"):
        BlockStore(path)


def test_folder_under_a_regular_file_is_not_writable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is not writable"):
        BlockStore(tmp_path / "file" / "profile" / "blocks.db")


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody may write: a read-only tmpfs for root, chmod 0500 for others."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir(mode=0o500)
        yield folder
        folder.chmod(0o700)
        return
    with tmpfs(tmp_path / "ro", "ro,size=1m") as folder:
        yield folder


def test_read_only_folder_is_reported(read_only_dir: Path) -> None:
    with pytest.raises(StoreError, match="is not writable"):
        BlockStore(read_only_dir / "blocks.db")
    with pytest.raises(StoreError, match="is not writable"):
        BlockStore(read_only_dir / "profile" / "blocks.db")


def test_existing_store_on_a_folder_that_became_read_only(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", "size=4m") as folder:
        with BlockStore(folder / "blocks.db") as opened:
            opened.set_root("files", put_file(opened, [b"data"]))
        assert run("mount", "-o", "remount,ro", str(folder))
        with pytest.raises(StoreError, match="is not writable"):
            BlockStore(folder / "blocks.db")


@pytest.fixture(params=["tmpfs", "max_page_count"])
def small_disk(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, Callable[[], None]]]:
    """Yields (folder, free_space): a real 4 MiB tmpfs with a 1 MiB filler file (packs and
    SQLite both run out), or an SQLite page cap (max_page_count, 48 pages of 64 KiB) where a
    mount is impossible."""
    if request.param == "tmpfs":
        with tmpfs(tmp_path / "small", "size=4m") as folder:
            filler = folder / "filler"
            filler.write_bytes(bytes(1024 * 1024))
            yield folder, filler.unlink
        return
    pragmas = [*blockstore._CONNECTION_PRAGMAS, "PRAGMA max_page_count=48"]
    monkeypatch.setattr(blockstore, "_CONNECTION_PRAGMAS", pragmas)
    # A page cap binds SQLite only: every block stays in it here (packs meet the tmpfs).
    monkeypatch.setattr(blockstore, "PACK_MIN", 1 << 62)
    folder = tmp_path / "capped"
    folder.mkdir()
    yield folder, lambda: None


def test_disk_full_leaves_the_store_intact_and_recovers(
    small_disk: tuple[Path, Callable[[], None]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder, free_space = small_disk
    monkeypatch.setattr(blockstore, "BATCH_BLOCKS", 4)  # some chunks commit before the failure
    path = folder / "blocks.db"
    with BlockStore(path) as opened:
        first = [os.urandom(64 * 1024) for _ in range(4)]
        root = put_file(opened, first)
        opened.set_root("files", root)

        with pytest.raises(StoreError, match="disk full while writing the block store at"):
            with opened.session() as session, session.batch() as batch:
                for _ in range(200):
                    put_file(batch, [os.urandom(64 * 1024) for _ in range(4)])
        assert opened.get_root("files") == root
        assert opened.missing(root) == []
        assert [opened.get(cid_of(chunk)) for chunk in first] == first
        assert opened.stats()[0] > 5  # whole chunks of the failed import did commit...
        assert_sound(path)  # ...and nothing is half-written

        free_space()
        opened.gc()
        assert opened.stats()[0] == 5  # the failed import is collected, the root stays
        second = put_file(opened, [os.urandom(64 * 1024) for _ in range(2)])
        opened.set_root("files", second)
        opened.gc()
    with BlockStore(path) as reopened:
        assert reopened.get_root("files") == second
        assert reopened.missing(second) == []
    assert_sound(path)


# -- pack files ----------------------------------------------------------------------------


def _packs(store: BlockStore) -> list[str]:
    return sorted(f.name for f in store.packs.iterdir()) if store.packs.exists() else []


def test_big_blocks_are_written_once_to_a_pack_and_small_ones_stay_in_sqlite(
    store: BlockStore,
) -> None:
    leaves = [os.urandom(CHUNK) for _ in range(8)]
    with store.session() as session, session.batch() as batch:
        root = put_file(batch, leaves)
        small = b"small block"
        batch.put(cid_of(small), small, [])
    assert _packs(store) == ["00000001.pack"]  # one transaction, one pack
    assert (store.packs / "00000001.pack").stat().st_size == 8 * CHUNK
    with store._reading() as conn:
        inline = conn.execute("SELECT sum(length(data)) FROM blocks").fetchone()[0]
    assert inline == len(small) + len(b"node:") + 8 * 34  # the data of big blocks is not in it
    assert [store.get(cid_of(leaf)) for leaf in leaves] == leaves
    assert store.get(cid_of(small)) == small
    assert store.stats() == (10, 8 * CHUNK + len(small) + len(b"node:") + 8 * 34)
    store.put(cid_of(leaves[0]), leaves[0], [])  # stored already: no new pack
    assert _packs(store) == ["00000001.pack"]
    store.set_root("files", root)
    assert_sound(store.path)


def test_gc_removes_a_pack_once_none_of_its_blocks_is_left(store: BlockStore) -> None:
    kept = put_file(store, [os.urandom(CHUNK) for _ in range(2)])  # one put per block
    with store.session() as session, session.batch() as batch:
        dropped = put_file(batch, [os.urandom(CHUNK) for _ in range(4)])
    store.set_root("kept", kept)
    store.set_root("dropped", dropped)
    assert len(_packs(store)) == 3
    store.set_root("dropped", None)
    assert store.gc() == GcStats(blocks=5, bytes=4 * CHUNK + len(b"node:") + 4 * 34)
    assert _packs(store) == ["00000001.pack", "00000002.pack"]
    assert store.missing(kept) == []
    assert_sound(store.path)


def test_a_pack_nobody_names_is_removed_on_open_and_never_reused(tmp_path: Path) -> None:
    """What a kill between a pack's write and its commit leaves behind."""
    path = tmp_path / "blocks.db"
    with BlockStore(path) as first:
        root = put_file(first, [os.urandom(CHUNK)])
        first.set_root("files", root)
        (first.packs / "00000007.pack").write_bytes(os.urandom(CHUNK))
        (first.packs / "notes.txt").write_text("not a pack")
    with BlockStore(path) as second:
        assert _packs(second) == ["00000001.pack", "notes.txt"]
        second.put(cid_of(b"x" * CHUNK), b"x" * CHUNK, [])
        assert "00000008.pack" in _packs(second)  # numbered after every pack seen
        assert second.missing(root) == []


def test_a_damaged_pack_is_reported_and_the_store_goes_on(store: BlockStore) -> None:
    leaf = os.urandom(CHUNK)
    store.put(cid_of(leaf), leaf, [])
    os.truncate(store.packs / "00000001.pack", CHUNK // 2)
    with pytest.raises(StoreError, match="is damaged"):
        store.get(cid_of(leaf))
    other = os.urandom(CHUNK)
    store.put(cid_of(other), other, [])
    assert store.get(cid_of(other)) == other


def test_a_store_of_the_first_schema_is_upgraded_in_place(tmp_path: Path) -> None:
    """Version 1 kept every block in SQLite; those stay readable where they are, new big
    blocks go to packs, and version 1 code would refuse the upgraded file (newer)."""
    path = tmp_path / "blocks.db"
    old = os.urandom(CHUNK)
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute(
            "CREATE TABLE blocks (id INTEGER PRIMARY KEY, cid BLOB NOT NULL UNIQUE, "
            "size INTEGER NOT NULL, data BLOB NOT NULL)"
        )
        raw.execute(
            "CREATE TABLE links (parent INTEGER NOT NULL, child BLOB NOT NULL, "
            "PRIMARY KEY (parent, child)) WITHOUT ROWID"
        )
        raw.execute("CREATE TABLE pins (name TEXT PRIMARY KEY, cid BLOB NOT NULL) WITHOUT ROWID")
        raw.execute(
            "INSERT INTO blocks (cid, size, data) VALUES (?, ?, ?)", (cid_of(old), CHUNK, old)
        )
        raw.execute("INSERT INTO pins VALUES ('files', ?)", (cid_of(old),))
        raw.execute("PRAGMA user_version=1")
    raw.close()
    with BlockStore(path) as upgraded:
        assert upgraded.get(cid_of(old)) == old
        assert upgraded.get_root("files") == cid_of(old)
        new = os.urandom(CHUNK)
        upgraded.put(cid_of(new), new, [])
        assert upgraded.get(cid_of(new)) == new and _packs(upgraded) == ["00000001.pack"]
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (2,)
    raw.close()
    assert_sound(path)


# -- crash consistency ---------------------------------------------------------------------

CHILD = r"""
import hashlib, os, random, sys
from pathlib import Path
from core.files.blockstore import BlockStore

def cid_of(data):
    return b"\x12\x20" + hashlib.sha256(data).digest()

store = BlockStore(Path(sys.argv[1]))
rnd = random.Random(int(sys.argv[2]))
most = int(sys.argv[3])
for round_ in range(1, 10**9):
    with store.session() as session:
        with session.batch() as batch:
            links = []
            for _ in range(rnd.randint(most // 8, most)):
                data = os.urandom(rnd.choice((100, 65536, 262144)))
                batch.put(cid_of(data), data, [])
                links.append(cid_of(data))
            previous = store.get_root("files")
            if previous and rnd.random() < 0.5:
                links.append(previous)  # a DAG that grows across rounds
            node = b"".join(links)
            batch.put(cid_of(node), node, links)
        store.set_root("files", cid_of(node))
    print(cid_of(node).hex(), flush=True)
    if round_ % 3 == 0:
        store.gc()
"""


@pytest.mark.parametrize("most", [80, 400])
def test_sigkill_at_random_moments_never_breaks_the_store(tmp_path: Path, most: int) -> None:
    """Rounds of up to 80 blocks mostly commit in the caller's thread; rounds of up to 400
    (up to 100 MiB) commit from the batch's writer thread while its checkpoint thread copies
    the WAL back, so the kill lands in those too."""
    path = tmp_path / "blocks.db"
    rnd = random.Random(1234)
    for kill in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(kill), str(most)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        reported = [child.stdout.readline().strip()]  # the first root is committed
        time.sleep(rnd.uniform(0.02, 0.4))
        child.send_signal(signal.SIGKILL)
        reported += child.stdout.read().split()
        child.wait()
        assert child.returncode == -signal.SIGKILL

        with BlockStore(path) as reopened:
            root = reopened.get_root("files")
            assert root is not None
            # Never older than the last root the child saw committed.
            assert root.hex() == reported[-1] or root.hex() not in reported
            assert reopened.missing(root) == []
            reopened.gc()
            assert reopened.missing(root) == []
        assert_sound(path)


CACHE_CHILD = """
import os, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from core.files.blockstore import BlockStore

def peak_kib():  # VmHWM belongs to this image; ru_maxrss survives exec from the parent
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

store = BlockStore(Path({db!r}))
before = peak_kib()
blob = os.urandom(262144)
with store.session() as session, session.batch() as batch:
    for i in range(512):
        batch.put(i.to_bytes(4, "big") * 9, blob[4:] + i.to_bytes(4, "big"), [])
print((peak_kib() - before) // 1024)
"""


def test_page_cache_stays_bounded_on_a_new_store(tmp_path: Path) -> None:
    """The cache size is given in KiB, and on a new file SQLite converted it with 4 KiB pages:
    with 64 KiB pages an import then held up to 256 MiB of cache. 128 MiB written must not
    cost anywhere near that."""
    import subprocess
    import sys

    script = CACHE_CHILD.format(
        root=str(Path(__file__).resolve().parents[3]), db=str(tmp_path / "fresh.sqlite")
    )
    grown_mib = int(
        subprocess.run(
            [sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=120
        ).stdout
    )
    assert grown_mib < 80


# -- cancelled imports and disk space ------------------------------------------------------


def write_random_file(path: Path, mib: int) -> None:
    with path.open("wb") as fh:
        for _ in range(mib):
            fh.write(os.urandom(1024 * 1024))


def disk_bytes(path: Path) -> int:
    """What the store takes on disk: the database file, its WAL and its packs."""
    wal = path.with_name(path.name + "-wal")
    packs = path.with_name(path.name + "-packs")
    packed = sum(f.stat().st_size for f in packs.iterdir()) if packs.exists() else 0
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0) + packed


def stored_cids(path: Path) -> set[bytes]:
    with sqlite3.connect(path) as raw:
        cids = {row[0] for row in raw.execute("SELECT cid FROM blocks")}
    raw.close()
    return cids


#: Slack allowed over the size before the cancelled import: a few 64 KiB pages (b-tree,
#: pointer-map and freelist pages that moved) — far below one 16 MiB batch.
SHRINK_SLACK = 1024 * 1024


async def test_cancelled_big_import_frees_its_blocks_and_gives_the_disk_back(
    tmp_path: Path,
) -> None:
    """A real 96 MiB file, cancelled three quarters in (72 MiB of blocks already committed):
    afterwards every stored block is reachable from the root, and the store's file and WAL
    are back within SHRINK_SLACK of their size before the import."""
    from core.files.filetree import Cancel, FileTree
    from core.ipfs import unixfs

    path = tmp_path / "profile" / "blocks.sqlite"
    kept, big = tmp_path / "kept.bin", tmp_path / "big.bin"
    write_random_file(kept, 16)
    write_random_file(big, 96)
    with BlockStore(path) as opened:
        tree = FileTree(opened)
        await tree.store_file("kept.bin", kept)
        before_blocks, before_disk = opened.stats(), disk_bytes(path)

        cancel = Cancel()
        reached: list[int] = []

        def progress(done: int) -> None:
            reached.append(done)
            if done >= 72 * 1024 * 1024:
                cancel.cancel()
                # Measured here, inside the import: its blocks are really committed.
                reached.append(opened.stats()[1])

        with pytest.raises(unixfs.ImportCancelled):
            await tree.store_file("big.bin", big, progress=progress, cancel=cancel)
        assert reached[-1] > before_blocks[1] + 32 * 1024 * 1024  # committed, not just queued
        assert disk_bytes(path) <= before_disk + SHRINK_SLACK

        reachable = set(unixfs.dag_cids(opened.get, tree._root))
        assert stored_cids(path) == reachable  # no orphan
        assert opened.stats() == before_blocks
        assert [name for name, _ in _tree_names(tree)] == ["kept.bin"]
        with opened._reading() as conn:  # 2 = FAST: freed pages are not zeroed through the WAL
            assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 2
    assert_sound(path)


def _tree_names(tree: object) -> list[tuple[str, bytes]]:
    from core.ipfs.hamt import HamtDirectory

    root = HamtDirectory.load(tree.store.get, tree._root)  # type: ignore[attr-defined]
    return [(name, link.cid) for name, link in root.items()]


def test_wal_stays_bounded_while_a_batch_checkpoints_alongside(store: BlockStore) -> None:
    """A batch's commits leave the WAL to a checkpoint thread; the writer waits for it every
    64 MiB so the WAL starts over. Without that wait the WAL would hold all 256 MiB."""
    wal = store.path.with_name(store.path.name + "-wal")
    biggest = 0
    blob = os.urandom(CHUNK)
    with store.session() as session, session.batch() as batch:
        for i in range(1024):
            batch.put(cid_of(blob + i.to_bytes(4, "big")), blob + i.to_bytes(4, "big"), [])
            if i % 16 == 0 and wal.exists():
                biggest = max(biggest, wal.stat().st_size)
    assert store.stats()[0] == 1024
    assert biggest < 128 * 1024 * 1024, f"WAL grew to {biggest / 2**20:.0f} MiB"
    assert_sound(store.path)


def test_batch_goes_on_while_a_reader_holds_an_old_snapshot(
    store: BlockStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that never ends its snapshot keeps the checkpoint from catching up: the batch
    waits for it once (here 0.5 s), then checkpoints like plain commits, and finishes."""
    monkeypatch.setattr(blockstore, "_CATCH_UP_S", 0.5)
    store.set_root("files", put_file(store, [b"before"]))
    reader = sqlite3.connect(store.path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM blocks").fetchone() == (2,)
        blob = os.urandom(CHUNK)
        started = time.perf_counter()
        with store.session() as session, session.batch() as batch:
            for i in range(768):
                batch.put(cid_of(blob + i.to_bytes(4, "big")), blob + i.to_bytes(4, "big"), [])
        elapsed = time.perf_counter() - started
        assert store.stats()[0] == 2 + 768
        assert reader.execute("SELECT count(*) FROM blocks").fetchone() == (2,)  # its snapshot
        assert elapsed < 60
    finally:
        reader.execute("ROLLBACK")
        reader.close()
    assert_sound(store.path)
