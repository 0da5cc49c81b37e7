"""Persistent block store: an SQLite file in WAL mode inside the profile folder, and pack
files beside it for the data of big blocks.

Why SQLite: it gives atomic multi-row transactions, crash recovery and concurrent readers
for free, in the standard library. A chunk of blocks with their links, a pin change, or a
whole GC lands completely or not at all. Blocks are committed before the pin that names
them, and GC never deletes what a pin reaches, so no crash can leave a pin on a missing
block.

Why packs: SQLite's WAL writes every byte twice (the WAL, then the database file when it is
copied back), and that copy was most of a big import's cost (0.3-0.4x hashlib.sha256, where
building and hashing the blocks alone runs at 1.0x). A block of ``PACK_MIN`` bytes or more
(file leaves: 256 KiB) has its data written once, into an append-only pack file of its
commit (``<store>-packs/<n>.pack``, one per transaction: an import's 16 MiB chunk), and
SQLite keeps its row (CID, size, links, pack and offset) as for any block. The pack is
written and fdatasync'ed, its directory entry too, before the transaction naming it starts
to commit, so no row, however durable, can ever point at data that is not on disk. A pack
whose commit failed is removed at once; one left by a kill between its write and its
commit is removed the next time the store opens (nothing names it). GC removes a pack once
none of its blocks is left: a pack holds blocks of one import or one fetched batch, so they
go together. Small blocks (directory and HAMT nodes, small files) stay in SQLite.

Durability (``synchronous``):

* Bulk writes (blocks, GC) run with ``synchronous=NORMAL``. In WAL mode a commit then
  appends to the WAL without an fsync; the WAL is synced before every checkpoint and the
  database after it. After SIGKILL nothing committed is lost (the WAL is in the OS page
  cache). After a power loss the database is always consistent (WAL frames carry
  cumulative checksums, so recovery keeps an exact prefix of the committed transactions)
  but the newest commits may roll back. Losing a just-written, still unreferenced block is
  harmless: nothing points at it yet.
* ``set_root`` commits with ``synchronous=FULL``: its commit fsyncs the WAL, and because
  the WAL is one append-only file, that one fsync also makes durable every block row
  written before it (packed data was synced before its row). So a root that was reported
  set survives a power loss together with its whole DAG. At worst the root switch under
  way at the moment of the power loss is lost, never a block under a surviving root.

Disk space: the file is in ``auto_vacuum=INCREMENTAL`` mode, so after a GC that freed
something the free pages are released 16 MiB per transaction (each one short, so readers
and other writers never wait long, and each atomic, so SIGKILL in the middle only leaves
pages on the free list), then the WAL is checkpointed and truncated if no reader is in
the way. A full VACUUM is never needed (it would rewrite the whole file while holding the
write lock).

Threads: the store is used from worker threads (``trio.to_thread``), and trio may run
successive calls of one import on different threads. So no transaction ever spans two
calls. Connections come from a small pool (not one per thread: trio's worker threads come
and go, and thread-local connections would leak). Writers are serialised by a lock in
this process. Readers take no lock: WAL gives them a snapshot, so ``get`` does not wait
for a long import's commit.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: A batch commits after this many blocks or bytes, whichever comes first (~one 16 MiB
#: transaction per 64 chunks of 256 KiB). Bigger gains little; smaller adds per-commit cost.
BATCH_BLOCKS = 64
BATCH_BYTES = 16 * 1024 * 1024

#: Blocks at least this big keep their data in a pack file (see the module docstring):
#: file leaves (256 KiB, 1 MiB from some importers); directory and HAMT nodes stay inline.
PACK_MIN = 32 * 1024

#: 64 KiB pages: a 256 KiB chunk is 4 overflow pages instead of 64 (measured ~1.5x faster
#: inserts than 4 KiB pages). Only takes effect when the file is created.
_PAGE_SIZE = 65536
#: Pages released per shrink transaction after GC (16 MiB), so the WAL stays bounded.
_SHRINK_PAGES = 256
#: SQLite's default automatic checkpoint (pages of WAL), restored after a batch's commits.
_AUTOCHECKPOINT_PAGES = 1000
#: During a batch the WAL is copied back by a thread of its own, concurrently with the
#: commits; after this many bytes of commits the writer waits for it to catch up, so that
#: the next commit starts the WAL over instead of growing it.
_WAL_CAP_BYTES = 64 * 1024 * 1024
#: ...but never longer than this: a long reader can hold the checkpoint back, and then the
#: WAL grows (as it would without the thread) rather than the import stopping.
_CATCH_UP_S = 5.0
#: How often a batch asks the kernel to start writing the store's dirty pages to disk.
_WRITE_BEHIND_S = 0.005
#: sync_file_range(2)'s SYNC_FILE_RANGE_WRITE: start write-back, wait for nothing.
_SYNC_FILE_RANGE_WRITE = 2
#: How long the WAL truncation after a shrink waits for readers before leaving it for later.
_TRUNCATE_WAIT_MS = 200
_IDLE_CONNECTIONS = 4
_SCHEMA_VERSION = 2
"""1: every block's data in SQLite. 2: ``pack`` and ``at`` (pack number, byte offset) for a
block whose data is in a pack file; its ``data`` is then empty."""
_BUSY_TIMEOUT_S = 10.0

_CACHE_SIZE = "PRAGMA cache_size=-16384"

#: Applied to every connection. temp_store=MEMORY keeps GC's mark tables off a full disk.
#: secure_delete=FAST: Python's SQLite is often built with SECURE_DELETE on, which zeroes
#: every freed page through the WAL, i.e. writes a collected 900 MiB twice more (4 s of a
#: cancelled import's cleanup); the freed pages are cut off the file right after anyway.
_CONNECTION_PRAGMAS = [
    "PRAGMA synchronous=NORMAL",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA secure_delete=FAST",
    _CACHE_SIZE,
    "PRAGMA journal_size_limit=67108864",
]

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS blocks (
        id INTEGER PRIMARY KEY,
        cid BLOB NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        data BLOB NOT NULL,
        pack INTEGER,
        at INTEGER
    )""",
    # Links of a block, keyed by the parent's rowid; a child need not be stored (yet).
    """CREATE TABLE IF NOT EXISTS links (
        parent INTEGER NOT NULL,
        child BLOB NOT NULL,
        PRIMARY KEY (parent, child)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS pins (
        name TEXT PRIMARY KEY,
        cid BLOB NOT NULL
    ) WITHOUT ROWID""",
]

# Everything reachable from the GC roots in temp.seed through recorded links.
_UPGRADE_FROM_1 = [
    "ALTER TABLE blocks ADD COLUMN pack INTEGER",
    "ALTER TABLE blocks ADD COLUMN at INTEGER",
]
_PACK_INDEX = "CREATE INDEX IF NOT EXISTS blocks_by_pack ON blocks (pack) WHERE pack IS NOT NULL"

_MARK = """
INSERT INTO temp.live (cid)
WITH RECURSIVE reach (cid) AS (
    SELECT cid FROM temp.seed
    UNION
    SELECT l.child FROM reach
    JOIN main.blocks AS b ON b.cid = reach.cid
    JOIN main.links AS l ON l.parent = b.id
)
SELECT cid FROM reach
"""

_MISSING = """
WITH RECURSIVE reach (cid) AS (
    SELECT ?
    UNION
    SELECT l.child FROM reach
    JOIN blocks AS b ON b.cid = reach.cid
    JOIN links AS l ON l.parent = b.id
)
SELECT cid FROM reach WHERE cid NOT IN (SELECT cid FROM blocks)
"""

_Block = tuple[bytes, bytes | bytearray, tuple[bytes, ...]]
_PACK_SUFFIX = ".pack"


class StoreError(Exception):
    """A block store failure worded for the user (disk full, folder not writable, ...)."""


@dataclass(frozen=True)
class GcStats:
    """What one ``gc()`` freed."""

    blocks: int
    bytes: int


class BlockStore:
    """Content-addressed blocks, their links, and named pins in one SQLite file.

    CIDs are opaque binary strings here; the store never parses them.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._write_lock = threading.Lock()
        self._lock = threading.Lock()  # guards the idle pool, the sessions and _closed
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        self._sessions: set[Session] = set()
        self.packs = self.path.with_name(self.path.name + "-packs")
        """The folder of this store's pack files."""
        self._next_pack = 1  # guarded by the write lock
        self._make_folder()
        self._create()
        self._forget_unnamed_packs()

    # -- public API ---------------------------------------------------------------------

    def close(self) -> None:
        """Close idle connections; connections in use close when their call returns."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> BlockStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, cid: bytes) -> bytes | None:
        with self._reading() as conn:
            row = conn.execute(
                "SELECT data, pack, at, size FROM blocks WHERE cid = ?", (cid,)
            ).fetchone()
        if row is None:
            return None
        data, pack, at, size = row
        return data if pack is None else self._read_packed(pack, at, size)

    def has(self, cid: bytes) -> bool:
        with self._reading() as conn:
            row = conn.execute("SELECT 1 FROM blocks WHERE cid = ?", (cid,)).fetchone()
        return row is not None

    def put(self, cid: bytes, data: bytes, links: list[bytes]) -> None:
        """Store one block in its own transaction; storing a present block is a no-op.

        ``links`` are the child CIDs, recorded so GC can follow them.
        """
        self._write_blocks([_block(cid, data, links)], None)

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        """Buffer puts and commit them in few large transactions (see ``Batch``).

        On an exception inside the block the uncommitted part is dropped.
        """
        with _batch(self, None) as batch:
            yield batch

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Protect every block written through the session from ``gc()`` until it ends.

        An import writes blocks long before a root references them; without this, a GC
        started by an unrelated remove would collect them mid-import.
        """
        session = Session(self)
        with self._lock:
            self._sessions.add(session)
        try:
            yield session
        finally:
            with self._lock:
                self._sessions.discard(session)

    def get_root(self, name: str) -> bytes | None:
        with self._reading() as conn:
            row = conn.execute("SELECT cid FROM pins WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def set_root(self, name: str, cid: bytes | None) -> None:
        """Atomically replace (or with ``None`` remove) the pin ``name``.

        Raises StoreError if the block ``cid`` is not stored: a pin never names a missing
        block. Committed durably (fsync), see the module docstring. Children are not
        checked (a partially fetched DAG may be pinned); ``missing()`` tells what is absent.
        """
        with self._writing(durable=True) as conn:
            if cid is None:
                conn.execute("DELETE FROM pins WHERE name = ?", (name,))
                return
            # Checked inside the transaction: no GC can remove the block in between.
            if conn.execute("SELECT 1 FROM blocks WHERE cid = ?", (cid,)).fetchone() is None:
                raise StoreError(f"cannot pin {name!r}: block {cid.hex()} is not in the store")
            conn.execute(
                "INSERT INTO pins (name, cid) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET cid = excluded.cid",
                (name, cid),
            )

    def roots(self) -> dict[str, bytes]:
        with self._reading() as conn:
            return dict(conn.execute("SELECT name, cid FROM pins").fetchall())

    def missing(self, cid: bytes) -> list[bytes]:
        """CIDs reachable from ``cid`` (itself included) whose blocks are not stored."""
        with self._reading() as conn:
            return [row[0] for row in conn.execute(_MISSING, (cid,))]

    def gc(self) -> GcStats:
        """Delete every block not reachable from a pin or a live session, atomically.

        Marking follows the recorded links (a recursive CTE) and tolerates links to blocks
        that are not stored. Then the freed pages are given back to the file system.
        """
        with self._writing() as conn:
            self._seed(conn)
            conn.execute(_MARK)
            stats, emptied = _sweep(conn)
        for pack in emptied:  # after the commit: until then the rows still named them
            self._remove_pack(pack)
        self._shrink()
        return stats

    def stats(self) -> tuple[int, int]:
        """(number of blocks, total bytes of block data)."""
        with self._reading() as conn:
            count, total = conn.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM blocks"
            ).fetchone()
        return count, total

    # -- writing ------------------------------------------------------------------------

    def _write_blocks(
        self, blocks: list[_Block], guard: set[bytes] | None, autocheckpoint: bool = True
    ) -> None:
        """Insert blocks and their links in one transaction.

        The guard (a session's CID set) is extended under the write lock, before the
        commit, so a GC (which holds the same lock) sees every CID whose block it sees.
        """
        pack: int | None = None
        try:
            with self._writing(autocheckpoint=autocheckpoint) as conn:
                if guard is not None:
                    guard.update(cid for cid, _, _ in blocks)
                new = _absent(conn, blocks)
                big = [block for block in new if len(block[1]) >= PACK_MIN]
                if big:
                    pack = self._write_pack(big)
                at = 0  # the big blocks lie in the pack in the order of ``new``
                for cid, data, links in new:
                    row: tuple[bytes, int, bytes | bytearray, int | None, int | None]
                    if len(data) >= PACK_MIN:
                        row = (cid, len(data), b"", pack, at)
                        at += len(data)
                    else:
                        row = (cid, len(data), data, None, None)
                    cur = conn.execute(
                        "INSERT INTO blocks (cid, size, data, pack, at) VALUES (?, ?, ?, ?, ?)",
                        row,
                    )
                    if links:
                        parent = cur.lastrowid
                        conn.executemany(
                            "INSERT OR IGNORE INTO links (parent, child) VALUES (?, ?)",
                            ((parent, child) for child in links),
                        )
        except BaseException:
            if pack is not None:  # its rows were rolled back: nothing names it
                self._remove_pack(pack)
            raise

    # -- pack files ---------------------------------------------------------------------

    def _pack_path(self, pack: int) -> Path:
        return self.packs / f"{pack:08d}{_PACK_SUFFIX}"

    def _write_pack(self, blocks: list[_Block]) -> int:
        """Write ``blocks``' data, one after the other, to a new pack and make it durable
        (file and directory entry); return its number. Runs under the write lock."""
        pack = self._next_pack
        self._next_pack += 1
        path = self._pack_path(pack)
        try:
            self.packs.mkdir(exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_BINARY
            fd = os.open(path, flags, 0o644)
            try:
                _write_all(fd, [data for _, data, _ in blocks])
                _fdatasync(fd)
            finally:
                os.close(fd)
            _sync_folder(self.packs)
        except OSError as exc:
            with suppress(OSError):
                path.unlink()
            raise StoreError(self._describe_os(exc)) from exc
        return pack

    def _read_packed(self, pack: int, at: int, size: int) -> bytes | None:
        """A packed block's data; None if GC removed its pack since the row was read. Each
        read opens the pack anew: a cached descriptor could be closed by GC and its number
        reused by another file while a reader still holds it."""
        try:
            fd = os.open(self._pack_path(pack), os.O_RDONLY | _O_CLOEXEC | _O_BINARY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(self._describe_os(exc)) from exc
        try:
            data = _pread(fd, size, at)
        except OSError as exc:
            raise StoreError(self._describe_os(exc)) from exc
        finally:
            os.close(fd)
        if len(data) != size:
            raise StoreError(f"the block store's pack {self._pack_path(pack)} is damaged")
        return data

    def _remove_pack(self, pack: int) -> None:
        try:
            self._pack_path(pack).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:  # left for the next open, which removes unnamed packs
            log.warning("could not remove %s: %s", self._pack_path(pack), exc)

    def _forget_unnamed_packs(self) -> None:
        """Remove packs no row names (a kill between a pack's write and its commit), and
        number new packs after every pack there is."""
        with self._write_lock:
            try:
                present = {
                    int(f.stem)
                    for f in self.packs.iterdir()
                    if f.suffix == _PACK_SUFFIX and f.stem.isdigit()
                }
            except FileNotFoundError:
                present = set()
            except OSError as exc:
                raise StoreError(self._describe_os(exc)) from exc
            with self._reading() as conn:
                named = {
                    row[0]
                    for row in conn.execute(
                        "SELECT DISTINCT pack FROM blocks WHERE pack IS NOT NULL"
                    )
                }
            for pack in present - named:
                self._remove_pack(pack)
            self._next_pack = max([0, *present, *named]) + 1

    def _seed(self, conn: sqlite3.Connection) -> None:
        """Fill temp.seed with the GC roots: every pin and every live session's CIDs.

        Runs under the write lock, which is also held while a session's set grows.
        """
        for table in ("seed", "live"):
            conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} (cid BLOB PRIMARY KEY)")
            conn.execute(f"DELETE FROM temp.{table}")
        conn.execute("INSERT OR IGNORE INTO temp.seed SELECT cid FROM main.pins")
        with self._lock:
            guarded = set().union(*(session._cids for session in self._sessions))
        conn.executemany("INSERT OR IGNORE INTO temp.seed VALUES (?)", ((c,) for c in guarded))

    def _shrink(self) -> None:
        """Return free pages to the file system, 16 MiB per transaction.

        Best effort: moving pages needs WAL space, so on a full disk it stops and leaves
        the pages on the free list, where later writes reuse them anyway.
        """
        try:
            released = False
            while self._shrink_step():
                released = True
            if released:
                self._truncate_wal()
            else:  # PASSIVE never waits for readers; if one is active, a later one finishes
                with self._connection() as conn, self._errors():
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except StoreError as exc:
            log.warning("could not shrink the block store: %s", exc)

    def _truncate_wal(self) -> None:
        """Copy the WAL back into the file (which only then gets shorter) and empty the WAL.

        TRUNCATE has to wait for readers of older snapshots, so it waits at most
        ``_TRUNCATE_WAIT_MS``; if a reader is still there it gives up (the next automatic
        checkpoint finishes the job, and ``journal_size_limit`` caps the WAL meanwhile).
        Our own writers wait on the write lock for that short time.
        """
        with self._write_lock, self._connection() as conn, self._errors():
            conn.execute(f"PRAGMA busy_timeout={_TRUNCATE_WAIT_MS}")
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.OperationalError as exc:  # busy beyond the wait: leave it for later
                log.debug("WAL not truncated yet: %s", exc)
            finally:
                conn.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT_S * 1000)}")

    def _shrink_step(self) -> bool:
        """Release up to _SHRINK_PAGES free pages; False when none are left (or no progress)."""
        with self._write_lock, self._connection() as conn, self._errors():
            before: int = conn.execute("PRAGMA freelist_count").fetchone()[0]
            if not before:
                return False
            # executescript steps the pragma to completion; execute() frees only one page.
            conn.executescript(f"PRAGMA incremental_vacuum({_SHRINK_PAGES})")
            after: int = conn.execute("PRAGMA freelist_count").fetchone()[0]
            return after < before

    @contextmanager
    def _writing(
        self, durable: bool = False, autocheckpoint: bool = True
    ) -> Iterator[sqlite3.Connection]:
        """One write transaction; rolled back entirely on any exception.

        ``autocheckpoint=False`` leaves the WAL to a batch's checkpoint thread: the commit
        then never copies the WAL back itself (nor waits for its fsyncs).
        """
        with self._write_lock, self._connection() as conn, self._errors():
            try:
                if not autocheckpoint:
                    conn.execute("PRAGMA wal_autocheckpoint=0")
                if durable:
                    conn.execute("PRAGMA synchronous=FULL")
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            finally:
                # Failing here leaves this connection slower (FULL) or checkpointing less
                # often, never less safe.
                if durable:
                    with suppress(sqlite3.Error):
                        conn.execute("PRAGMA synchronous=NORMAL")
                if not autocheckpoint:
                    with suppress(sqlite3.Error):
                        conn.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT_PAGES}")

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._connection() as conn, self._errors():
            yield conn

    # -- connections and errors ---------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """Borrow a pooled connection; one left inside a transaction is discarded."""
        with self._lock:
            if self._closed:
                raise StoreError(f"the block store at {self.path} is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._open()
        try:
            yield conn
        finally:
            with self._lock:
                keep = (
                    not self._closed
                    and not conn.in_transaction
                    and len(self._idle) < _IDLE_CONNECTIONS
                )
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    def _open(self) -> sqlite3.Connection:
        with self._errors():
            conn = sqlite3.connect(
                self.path,
                timeout=_BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                for pragma in _CONNECTION_PRAGMAS:
                    conn.execute(pragma)
            except BaseException:
                conn.close()
                raise
        return conn

    def _make_folder(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StoreError(f"disk full while writing the block store at {self.path}") from exc
            raise StoreError(f"the block store folder {self.path.parent} is not writable") from exc

    def _create(self) -> None:
        """Set the file-level options (only effective on a new file) and the schema."""
        with self._connection() as conn, self._errors():
            conn.execute(f"PRAGMA page_size={_PAGE_SIZE}")
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(
                    f"the block store at {self.path} cannot use write-ahead logging "
                    f"(journal mode {mode}); is it on a network drive?"
                )
            # A cache size in KiB is turned into pages with the page size of the moment: on a
            # new file that was 4 KiB, so 16 MiB meant 4096 pages — 256 MiB once pages are
            # 64 KiB. Set it again now that the page size is final.
            conn.execute(_CACHE_SIZE)
        with self._writing() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise StoreError(f"the block store at {self.path} was written by a newer Peerdesk")
            for statement in _SCHEMA:
                conn.execute(statement)
            if version == 1:
                for statement in _UPGRADE_FROM_1:
                    conn.execute(statement)
            conn.execute(_PACK_INDEX)
            conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn SQLite failures into StoreError with a message the user can act on."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(self._describe(exc)) from exc

    def _describe_os(self, exc: OSError) -> str:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"disk full while writing the block store at {self.path}"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"the block store folder {self.path.parent} is not writable"
        return f"the block store at {self.path} failed: {exc}"

    def _describe(self, exc: sqlite3.Error) -> str:
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name.startswith("SQLITE_FULL"):
            return f"disk full while writing the block store at {self.path}"
        if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")):
            return f"the block store folder {self.path.parent} is not writable"
        if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
            return f"the block store file {self.path} is damaged"
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return f"the block store at {self.path} is in use by another program"
        return f"the block store at {self.path} failed: {exc}"


class Batch:
    """Buffers puts and commits them together, ``BATCH_BLOCKS`` or ``BATCH_BYTES`` at a time.

    One transaction per chunk instead of per block is what makes large imports fast. A full
    chunk is committed by a writer thread of the batch's own while the caller goes on
    building the next one: SQLite releases the GIL while it writes, and hashing big buffers
    does too, so an import hashes and writes at the same time. At most one chunk is in
    flight (the next ``put`` that fills a chunk waits for it), so memory stays at two
    chunks, and a failed commit is raised by that ``put`` or by ``flush``.

    Those commits leave the WAL to a ``_Checkpointer`` thread, so copying it back into the
    file (and that copy's two fsyncs) overlaps the next commits instead of stalling them; a
    ``_WriteBehind`` thread keeps the disk writing meanwhile, so those fsyncs find most
    pages already written. Both matter for batches of small blocks (many small files, big
    directories): big blocks' data goes to a pack and only their rows to the WAL.

    Successive puts may come from different worker threads (one at a time: a batch is not
    meant to be shared by concurrent callers).
    """

    def __init__(self, store: BlockStore, guard: set[bytes] | None) -> None:
        self._store = store
        self._guard = guard
        self._pending: list[_Block] = []
        self._bytes = 0
        self._writer: ThreadPoolExecutor | None = None
        self._checkpointer: _Checkpointer | None = None
        self._write_behind: _WriteBehind | None = None
        self._inflight: Future[None] | None = None
        self._since_clean = 0  # bytes committed since the WAL last started over

    def put(self, cid: bytes, data: bytes, links: list[bytes]) -> None:
        self._queue(_block(cid, data, links))

    def put_owned(self, cid: bytes, data: bytes | bytearray, links: list[bytes]) -> None:
        """``put`` for a buffer the caller hands over and never writes again (the importer's
        leaves, read straight into place): queued as it is, where ``put`` would copy a
        bytearray, 256 KiB per chunk on the thread that also hashes."""
        self._queue((bytes(cid), data, tuple(links)))

    def _queue(self, block: _Block) -> None:
        self._pending.append(block)
        self._bytes += len(block[1])
        if len(self._pending) >= BATCH_BLOCKS or self._bytes >= BATCH_BYTES:
            pending = self._take()
            self._settle()
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="blockstore-batch")
                self._checkpointer = _Checkpointer(self._store)
                self._write_behind = _WriteBehind(self._store.path)
            self._inflight = self._writer.submit(self._commit, pending)

    def _commit(self, pending: list[_Block]) -> None:
        """Writer thread: one chunk, after letting the checkpoint catch up if the WAL is full."""
        assert self._checkpointer is not None
        if self._since_clean >= _WAL_CAP_BYTES and self._checkpointer.running:
            if not self._checkpointer.wait_caught_up(_CATCH_UP_S):
                # A reader holds old frames: waiting again every 64 MiB would stall the
                # import, so the rest of the batch checkpoints as plain commits do.
                self._checkpointer.stop()
            self._since_clean = 0
        running = self._checkpointer.running
        self._store._write_blocks(pending, self._guard, autocheckpoint=not running)
        self._since_clean += sum(len(data) for _, data, _ in pending if len(data) < PACK_MIN)
        self._checkpointer.committed()

    def flush(self) -> None:
        """Commit everything put so far and wait for it (a batch also flushes when its
        ``with`` block ends)."""
        self._settle()
        pending = self._take()
        if pending:
            self._store._write_blocks(pending, self._guard)

    def _take(self) -> list[_Block]:
        pending, self._pending, self._bytes = self._pending, [], 0
        return pending

    def _settle(self) -> None:
        """Wait for the chunk in flight; its failure is raised here."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            inflight.result()

    def _close(self, failed: bool) -> None:
        """Stop the writer thread. After a failure the uncommitted chunk is dropped and the
        one in flight is waited for (it may commit or not; either way nothing is torn), and
        its own error does not hide the one that ended the batch. So that a cancel is quick,
        that chunk no longer waits for the checkpoint thread to catch up."""
        self._take()
        try:
            if failed:
                if self._checkpointer is not None:
                    self._checkpointer.stop()
                with suppress(Exception):
                    self._settle()
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None
            if self._checkpointer is not None:
                self._checkpointer.stop()
                self._checkpointer = None
            if self._write_behind is not None:
                self._write_behind.stop()
                self._write_behind = None


class _Checkpointer:
    """Copies the WAL back into the database file in a thread of its own while a batch commits.

    A PASSIVE checkpoint runs alongside a writer (SQLite lets one checkpoint and one write
    transaction proceed at once) and never waits for readers. The WAL only starts over when
    a write transaction begins with every frame copied back, which a writer committing back
    to back never sees; so the batch's writer calls ``wait_caught_up`` now and then. Any
    failure (disk full, ...) just ends the thread: the normal automatic checkpoints of later
    commits take over, and the commit itself reports the problem.
    """

    def __init__(self, store: BlockStore) -> None:
        self._store = store
        self._changed = threading.Condition()
        self._commits = 0  # commits announced by the writer
        self._covered = 0  # commits that a complete checkpoint has copied back
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="blockstore-checkpoint")
        self._thread.start()

    @property
    def running(self) -> bool:
        with self._changed:
            return not self._stopped

    def committed(self) -> None:
        with self._changed:
            self._commits += 1
            self._changed.notify_all()

    def wait_caught_up(self, timeout: float) -> bool:
        """True once every commit so far is copied back; False if that took too long."""
        with self._changed:
            done = self._changed.wait_for(
                lambda: self._stopped or self._covered >= self._commits, timeout
            )
            return done and not self._stopped

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        self._thread.join()

    def _run(self) -> None:
        try:
            with self._store._connection() as conn, self._store._errors():
                while True:
                    with self._changed:
                        self._changed.wait_for(
                            lambda: self._stopped or self._commits > self._covered
                        )
                        if self._stopped:
                            return
                        target = self._commits
                    try:
                        busy, frames, copied = conn.execute(
                            "PRAGMA wal_checkpoint(PASSIVE)"
                        ).fetchone()
                    except sqlite3.OperationalError as exc:  # another checkpoint is running
                        if getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY"):
                            busy, frames, copied = 1, 0, -1
                        else:
                            raise
                    with self._changed:
                        if not busy and frames == copied:
                            self._covered = target
                            self._changed.notify_all()
                        else:  # a reader holds older frames, or GC is checkpointing: try again soon
                            self._changed.wait(0.02)
        except StoreError as exc:
            log.debug("batch checkpoints stopped: %s", exc)
        finally:
            with self._changed:
                self._stopped = True
                self._changed.notify_all()


class _WriteBehind:
    """Asks the kernel every few milliseconds to start writing the store's dirty pages (WAL
    and database file) to disk, while a batch runs.

    Otherwise the kernel writes them only when SQLite fsyncs (the machine's background
    write-back starts at a tenth of its RAM), so the disk sat idle while SQLite copied and
    the importer hashed, and each checkpoint then waited for all of its pages at once; with
    the disk kept busy a 2 GiB import was about a fifth faster here. Durability is
    untouched: SYNC_FILE_RANGE_WRITE only starts write-back and promises nothing, SQLite's
    own fsyncs stay the only points anything relies on. Where there is no
    sync_file_range (not Linux) this does nothing.
    """

    def __init__(self, path: Path) -> None:
        self._paths = [path, path.with_name(path.name + "-wal")]
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        if _sync_file_range is not None:
            self._thread = threading.Thread(target=self._run, name="blockstore-write-behind")
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        assert _sync_file_range is not None
        fds: dict[Path, int] = {}
        try:
            while not self._stopped.wait(_WRITE_BEHIND_S):
                for path in self._paths:
                    if path not in fds:
                        with suppress(OSError):  # the WAL may not exist yet
                            fds[path] = os.open(path, os.O_RDONLY)
                    if path in fds:
                        _sync_file_range(fds[path], 0, 0, _SYNC_FILE_RANGE_WRITE)
        finally:
            for fd in fds.values():
                os.close(fd)


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's sync_file_range(fd, offset, nbytes, flags), or None where there is none."""
    try:
        function = ctypes.CDLL(None).sync_file_range
    except (OSError, AttributeError, TypeError):  # TypeError: Windows has no CDLL(None)
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_sync_file_range = _load_sync_file_range()


class Session:
    """Blocks written through a session are GC roots while the session lasts.

    Also the blocks they link to: a new directory node written here keeps unchanged
    children alive even if the old root that held them is unpinned meanwhile.
    """

    def __init__(self, store: BlockStore) -> None:
        self._store = store
        self._cids: set[bytes] = set()

    def put(self, cid: bytes, data: bytes, links: list[bytes]) -> None:
        self._store._write_blocks([_block(cid, data, links)], self._cids)

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        with _batch(self._store, self._cids) as batch:
            yield batch


@contextmanager
def _batch(store: BlockStore, guard: set[bytes] | None) -> Iterator[Batch]:
    """A batch that is flushed at the end of the block, or dropped if the block raises."""
    batch = Batch(store, guard)
    failed = True
    try:
        yield batch
        batch.flush()
        failed = False
    finally:
        batch._close(failed)


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back after a failure without hiding it; if even that fails, the pool drops the
    connection (it is still in a transaction) and SQLite discards the transaction on close."""
    if conn.in_transaction:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _block(cid: bytes, data: bytes, links: Iterable[bytes]) -> _Block:
    """Copy caller buffers so a later mutation of a bytearray cannot change a queued block."""
    return bytes(cid), bytes(data), tuple(bytes(link) for link in links)


def _absent(conn: sqlite3.Connection, blocks: list[_Block]) -> list[_Block]:
    """The blocks not stored yet, each once (checked in the write transaction: nothing can
    store or delete one in between)."""
    seen: set[bytes] = set()
    out = []
    for block in blocks:
        cid = block[0]
        if cid in seen:
            continue
        seen.add(cid)
        if conn.execute("SELECT 1 FROM blocks WHERE cid = ?", (cid,)).fetchone() is None:
            out.append(block)
    return out


def _write_all(fd: int, buffers: list[bytes | bytearray]) -> None:
    """writev until every byte is written (a write may be short; IOV_MAX caps a call)."""
    views = [memoryview(b) for b in buffers if len(b)]
    while views:
        if hasattr(os, "writev"):
            written = os.writev(fd, views[:_IOV_MAX])
        else:  # Windows
            written = os.write(fd, views[0])
        while written and views:
            if written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            else:
                views[0] = views[0][written:]
                written = 0


def _sync_folder(folder: Path) -> None:
    """fsync a folder, so a file just created in it is there after a power loss (where
    folders cannot be opened, Windows, the file system's own ordering has to do)."""
    try:
        fd = os.open(folder, os.O_RDONLY | _O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pread(fd: int, size: int, at: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, at)
    os.lseek(fd, at, os.SEEK_SET)  # Windows: the descriptor is this call's own
    return os.read(fd, size)


_fdatasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)
"""fdatasync where there is one (not macOS, not Windows: fsync there)."""
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)
_IOV_MAX = 1024


def _sweep(conn: sqlite3.Connection) -> tuple[GcStats, list[int]]:
    """Delete every block not in temp.live, with its links; return what was freed and the
    packs left without a block (to be removed once this commits)."""
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS dead (id INTEGER PRIMARY KEY, size INTEGER NOT NULL)"
    )
    conn.execute("DELETE FROM temp.dead")
    conn.execute(
        "INSERT INTO temp.dead SELECT id, size FROM main.blocks "
        "WHERE cid NOT IN (SELECT cid FROM temp.live)"
    )
    count, total = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM temp.dead").fetchone()
    touched = [
        row[0]
        for row in conn.execute(
            "SELECT DISTINCT pack FROM main.blocks WHERE pack IS NOT NULL "
            "AND id IN (SELECT id FROM temp.dead)"
        )
    ]
    conn.execute("DELETE FROM main.links WHERE parent IN (SELECT id FROM temp.dead)")
    conn.execute("DELETE FROM main.blocks WHERE id IN (SELECT id FROM temp.dead)")
    emptied = [
        pack
        for pack in touched
        if conn.execute("SELECT 1 FROM main.blocks WHERE pack = ? LIMIT 1", (pack,)).fetchone()
        is None
    ]
    return GcStats(blocks=count, bytes=total), emptied
