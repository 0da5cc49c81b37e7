"""File-tree figures, each next to a baseline measured in the same run.

- import of a 2 GiB file into the peer's file tree (``FileTree.store_file``: chunking,
  hashing, SQLite commits, linking it in, the durable root switch and the GC after it), in
  MB/s next to hashlib.sha256 over the same bytes (MB/s, measured right before and right
  after the import, both reading the file from the page cache) and next to the disk (the
  same bytes copied to a new file and fsynced: a durable store writes each byte at least
  once, which the store's pack files do), and the importer's peak
  RSS (VmHWM of a child process of its own: ru_maxrss would carry the parent's peak
  across exec);
- the same import with the blocks thrown away instead of stored (reading, chunking,
  hashing, dag-pb): what the store adds is the difference;
- an import of that file cancelled at 90 %: how long from the cancel until its blocks are
  freed and the store file has shrunk, and the store's size on disk (file + WAL) before
  the import, at the cancel and after (the baseline is the size before);
- transfer of a 256 MiB file between two local peers over bitswap (MB/s);
- HAMT: inserting 1 000 and 100 000 names, and listing 100 000.

    .venv/bin/python benchmarks/bench_files.py [--size-mib 2048] [--transfer-mib 256]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHUNK = 1 << 20
LEAF = 256 * 1024


def make_file(path: Path, size: int) -> None:
    """Random bytes in which every 256 KiB chunk is unique (a counter at each chunk's start):
    a repeating pattern would let the store skip the blocks it already holds and flatter
    the import."""
    block = bytearray(os.urandom(CHUNK))
    with path.open("wb") as fh:
        for i in range(size // CHUNK):
            for at in range(0, CHUNK, LEAF):
                block[at : at + 8] = (i * CHUNK + at).to_bytes(8, "big")
            fh.write(block)


def sha256_rate(path: Path) -> float:
    start = time.perf_counter()
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return path.stat().st_size / (time.perf_counter() - start) / 1e6


def pipeline_rate(path: Path) -> float:
    """The importer alone: every block built and hashed, then dropped."""
    from core.ipfs.unixfs import import_file

    start = time.perf_counter()
    with path.open("rb") as fh:
        import_file(fh, lambda _cid, _block, _links: None)
    return path.stat().st_size / (time.perf_counter() - start) / 1e6


def disk_rate(path: Path, workdir: Path) -> float:
    """Copy to a new file in the store's folder with one fsync at the end, like a durable
    import of the same bytes would need at least."""
    copy = workdir / "copy.bin"
    start = time.perf_counter()
    with path.open("rb") as src, copy.open("wb") as dst:
        while chunk := src.read(CHUNK):
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    rate = path.stat().st_size / (time.perf_counter() - start) / 1e6
    copy.unlink()
    return rate


IMPORT_CHILD = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
import trio
from core.files.blockstore import BlockStore
from core.files.filetree import FileTree
src = Path({src!r})
tree = FileTree(BlockStore(Path({db!r})))
start = time.perf_counter()
trio.run(tree.store_file, "big.bin", src)
elapsed = time.perf_counter() - start
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(src.stat().st_size / elapsed / 1e6, peak / 1024)
"""


CANCEL_CHILD = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
import trio
from core.files.blockstore import BlockStore
from core.files.filetree import Cancel, FileTree
from core.ipfs.unixfs import ImportCancelled
src, db = Path({src!r}), Path({db!r})
def disk():
    files = [f for f in db.parent.glob(db.name + "*") if f.is_file() and f.suffix != ".sqlite-shm"]
    packs = db.with_name(db.name + "-packs")
    files += list(packs.iterdir()) if packs.exists() else []
    return sum(f.stat().st_size for f in files)
tree = FileTree(BlockStore(db))
cancel, seen = Cancel(), {{}}
def progress(done):
    if done >= src.stat().st_size * 0.9 and not cancel():
        cancel.cancel()
        seen["at"], seen["disk"] = time.perf_counter(), disk()
async def main():
    await tree.store_file("small.txt", b"kept")
    before = disk()
    try:
        await tree.store_file("big.bin", src, progress=progress, cancel=cancel)
    except ImportCancelled:
        pass
    print(time.perf_counter() - seen["at"], before, seen["disk"], disk())
trio.run(main)
"""


def cancel_cleanup(path: Path, workdir: Path) -> tuple[float, int, int, int]:
    db = workdir / "cancel.sqlite"
    script = CANCEL_CHILD.format(root=str(ROOT), db=str(db), src=str(path))
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout.split()
    for leftover in workdir.glob("cancel.sqlite*"):
        if leftover.is_dir():  # its packs
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    return float(out[0]), int(out[1]), int(out[2]), int(out[3])


def import_rate(path: Path, workdir: Path) -> tuple[float, float]:
    script = IMPORT_CHILD.format(root=str(ROOT), db=str(workdir / "import.sqlite"), src=str(path))
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout.split()
    return float(out[0]), float(out[1])


def transfer_rate(size: int, workdir: Path) -> float:
    import trio

    from core.libp2p_compat import quiet_library_logging
    from core.peer import PeerConfig, new_peer

    quiet_library_logging()

    async def main() -> float:
        def cfg(name: str) -> PeerConfig:
            return PeerConfig(
                listen_addrs=["/ip4/127.0.0.1/tcp/0"],
                bootstrap=[],
                dht_ready_wait=0.1,
                files_dir=str(workdir / name),
            )

        async with trio.open_nursery() as nursery:
            a = await nursery.start(new_peer(cfg("a")).run)
            b = await nursery.start(new_peer(cfg("b")).run)
            await b.connect(a.listen_addrs()[0])
            src = workdir / "transfer.bin"
            make_file(src, size)
            cid, _ = await a.require_files().store_file("t.bin", src)
            start = time.perf_counter()
            await b.require_files().save(cid, workdir / "received.bin")
            rate = size / (time.perf_counter() - start) / 1e6
            assert (workdir / "received.bin").stat().st_size == size
            a.stop()
            b.stop()
        return rate

    return trio.run(main)


def hamt_figures() -> dict[str, float]:
    from core.ipfs.hamt import HamtDirectory

    blocks: dict[bytes, bytes] = {}

    def put(cid: bytes, data: bytes, _links: list[bytes]) -> None:
        blocks[cid] = data

    file_cid = bytes.fromhex("01701220") + hashlib.sha256(b"x").digest()
    out = {}
    for n in (1_000, 100_000):
        d = HamtDirectory.empty(blocks.get)
        start = time.perf_counter()
        for i in range(n):
            d.set(f"file-{i:06d}.txt", file_cid, 10)
        root, _ = d.flush(put)
        out[f"insert_{n}"] = time.perf_counter() - start
    start = time.perf_counter()
    count = sum(1 for _ in HamtDirectory.load(blocks.get, root).items())
    out["list_100000"] = time.perf_counter() - start
    assert count == 100_000
    d = HamtDirectory.load(blocks.get, root)
    before = len(blocks)
    start = time.perf_counter()
    d.set("one-more.txt", file_cid, 10)
    d.flush(put)
    out["add_one_to_100000"] = time.perf_counter() - start
    out["blocks_written_for_one"] = len(blocks) - before
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--transfer-mib", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="peerdesk-bench-") as tmp:
        work = Path(tmp)
        src = work / "big.bin"
        make_file(src, args.size_mib * CHUNK)
        sha_before = sha256_rate(src)
        rate, rss = import_rate(src, work)
        sha = (sha_before + sha256_rate(src)) / 2
        pipeline = pipeline_rate(src)
        disk = disk_rate(src, work)
        print(
            f"import {args.size_mib} MiB       {rate:8.1f} MB/s   "
            f"(hashlib.sha256 {sha:8.1f} MB/s; ratio {rate / sha:5.2f})   "
            f"(disk: copy + fsync {disk:8.1f} MB/s; ratio {rate / disk:5.2f})   "
            f"peak RSS {rss:6.1f} MiB"
        )
        print(
            f"  blocks not stored      {pipeline:8.1f} MB/s   "
            f"(ratio to hashlib.sha256 {pipeline / sha:5.2f})"
        )
        took, before, at_cancel, after = cancel_cleanup(src, work)
        print(
            f"cancel at 90 %         {took:8.2f} s to free   "
            f"(store on disk: before {before / 2**20:.1f} MiB, at the cancel "
            f"{at_cancel / 2**20:.0f} MiB, after {after / 2**20:.1f} MiB)"
        )
        src.unlink()
        for name in ("import.sqlite", "import.sqlite-wal", "import.sqlite-shm"):
            (work / name).unlink(missing_ok=True)
        shutil.rmtree(work / "import.sqlite-packs", ignore_errors=True)
        t = transfer_rate(args.transfer_mib * CHUNK, work)
        print(f"transfer {args.transfer_mib} MiB     {t:8.1f} MB/s   (bitswap, two local peers)")
    h = hamt_figures()
    print(f"HAMT insert 1 000        {h['insert_1000'] * 1e3:8.1f} ms")
    print(f"HAMT insert 100 000      {h['insert_100000']:8.2f} s")
    print(f"HAMT list 100 000        {h['list_100000']:8.2f} s")
    print(
        f"HAMT add 1 to 100 000    {h['add_one_to_100000'] * 1e3:8.1f} ms   "
        f"({h['blocks_written_for_one']} blocks written)"
    )
    print(f"(parent RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
