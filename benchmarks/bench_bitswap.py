"""Bitswap figures for one file (64 MiB by default), all measured in the same run:

- Helia -> Helia (two Helia 7 nodes, tests/interop/heliapeer.mjs): the js baseline, once
  with Helia's import (1 MiB raw leaves) and once with Peerdesk's (256 KiB dag-pb leaves);
- Helia -> Peerdesk (Peerdesk fetches and saves a file Helia imported, Helia's DAG) and
  Peerdesk -> Helia (Helia cats a file Peerdesk stored, Peerdesk's DAG), each against the
  Helia -> Helia run of the same DAG;
- Peerdesk -> Peerdesk next to a bare py-libp2p stream carrying the same bytes (Noise + Yamux
  on loopback, one writer, one reader): the ceiling of our stack.

Every transfer goes to a fresh receiver (nothing cached) and ends with the file on disk.

    .venv/bin/python benchmarks/bench_bitswap.py [--size-mib 64] [--rounds 2]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.libp2p_compat import quiet_library_logging  # noqa: E402
from core.peer import Peer, PeerConfig, new_peer  # noqa: E402
from tests.core.ipfs.test_interop_helia import helia_node as helia  # noqa: E402
from tests.test_interop_js import HERE, NODE  # noqa: E402

BARE_PROTOCOL = "/peerdesk/bench-bare/1.0.0"
WRITE = 256 * 1024
LONG = 300_000


def make_file(path: Path, size: int) -> None:
    with path.open("wb") as fh:
        counter = 0
        while fh.tell() < size:
            fh.write(hashlib.sha256(b"%d" % counter).digest() * 2048)  # 64 KiB
            counter += 1
        fh.truncate(size)


@asynccontextmanager
async def peerdesk(folder: Path) -> AsyncIterator[Peer]:
    config = PeerConfig(
        listen_addrs=["/ip4/127.0.0.1/tcp/0"],
        bootstrap=[],
        dht_ready_wait=0.1,
        files_dir=str(folder),
    )
    async with trio.open_nursery() as nursery:
        peer = await nursery.start(new_peer(config).run)
        try:
            yield peer
        finally:
            peer.stop()
            await peer.stopped.wait()


def rate(size: int, seconds: float) -> float:
    return size / seconds / 1e6


async def helia_to_helia(src: Path, work: Path, size: int, peerdesk_dag: bool) -> float:
    """``peerdesk_dag``: the file imported as Peerdesk imports it (256 KiB dag-pb leaves), the
    like-for-like baseline for Peerdesk -> Helia; otherwise Helia's (1 MiB raw leaves)."""
    async with helia() as a, helia() as b:
        cid = (await a.cmd("addFile", path=str(src), peerdesk=peerdesk_dag, timeout=120))["cid"]
        await b.cmd("dial", addr=a.ready["addrs"][0])
        answer = await b.cmd(
            "cat", cid=cid, out=str(work / "hh.bin"), timeoutMs=300000, timeout=330
        )
        assert answer["size"] == size
        return rate(size, answer["ms"] / 1000)


async def helia_to_peerdesk(src: Path, work: Path, size: int, n: int) -> float:
    async with helia() as a, peerdesk(work / f"hp{n}") as pd:
        cid = (await a.cmd("addFile", path=str(src), timeout=120))["cid"]
        await a.cmd("dial", addr=pd.listen_addrs()[0])
        start = time.perf_counter()
        assert await pd.require_files().save(cid, work / "hp.bin") == size
        return rate(size, time.perf_counter() - start)


async def peerdesk_to_helia(src: Path, work: Path, size: int, n: int) -> float:
    async with peerdesk(work / f"ph{n}") as pd, helia() as b:
        cid, _ = await pd.require_files().store_file("bench.bin", src)
        await b.cmd("dial", addr=pd.listen_addrs()[0])
        answer = await b.cmd(
            "cat", cid=cid, out=str(work / "ph.bin"), timeoutMs=300000, timeout=330
        )
        assert answer["size"] == size
        return rate(size, answer["ms"] / 1000)


async def peerdesk_to_peerdesk(src: Path, work: Path, size: int, n: int) -> float:
    async with peerdesk(work / f"a{n}") as a, peerdesk(work / f"b{n}") as b:
        cid, _ = await a.require_files().store_file("bench.bin", src)
        await b.connect(a.listen_addrs()[0])
        start = time.perf_counter()
        assert await b.require_files().save(cid, work / "pp.bin") == size
        return rate(size, time.perf_counter() - start)


async def bare_stream(src: Path, work: Path, size: int, n: int) -> float:
    """The same bytes on one py-libp2p stream, read into a file: no bitswap, no store."""
    data = await trio.Path(src).read_bytes()
    async with peerdesk(work / f"c{n}") as a, peerdesk(work / f"d{n}") as b:
        done = trio.Event()
        received = 0

        async def handler(stream) -> None:
            nonlocal received
            with (work / "bare.bin").open("wb") as fh:
                try:
                    while received < size:
                        chunk = await stream.read(WRITE)
                        fh.write(chunk)
                        received += len(chunk)
                finally:
                    done.set()

        b.host.set_stream_handler(BARE_PROTOCOL, handler)
        await a.connect(b.listen_addrs()[0])
        start = time.perf_counter()
        stream = await a.host.new_stream(b.peer_id, [BARE_PROTOCOL])
        view = memoryview(data)
        for i in range(0, size, WRITE):
            await stream.write(bytes(view[i : i + WRITE]))
        await done.wait()
        elapsed = time.perf_counter() - start
        await stream.close()
        assert received == size
        return rate(size, elapsed)


async def main(size_mib: int, rounds: int) -> None:
    quiet_library_logging()
    logging.getLogger("core").setLevel(logging.WARNING)
    size = size_mib * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="peerdesk-bench-bitswap-") as tmp:
        work = Path(tmp)
        src = work / "src.bin"
        make_file(src, size)
        runs: dict[str, list[float]] = {}
        for n in range(rounds):
            if NODE is not None:
                runs.setdefault("hh", []).append(await helia_to_helia(src, work, size, False))
                runs.setdefault("hh256", []).append(await helia_to_helia(src, work, size, True))
                runs.setdefault("hp", []).append(await helia_to_peerdesk(src, work, size, n))
                runs.setdefault("ph", []).append(await peerdesk_to_helia(src, work, size, n))
            runs.setdefault("pp", []).append(await peerdesk_to_peerdesk(src, work, size, n))
            runs.setdefault("bare", []).append(await bare_stream(src, work, size, n))

        def show(key: str, label: str, base: str = "") -> None:
            if key not in runs:
                return
            best = max(runs[key])
            figures = " ".join(f"{r:6.1f}" for r in runs[key])
            ratio = f"  {best / max(runs[base]):4.2f}x {base}" if base else ""
            print(f"{label:<34} {figures} MB/s (best {best:6.1f}){ratio}")

        print(f"bitswap, {size_mib} MiB on loopback, {rounds} round(s):")
        if NODE is None:
            print("(Node.js not found: the Helia rows are skipped)")
        show("hh", "Helia -> Helia, Helia's DAG")
        show("hp", "Helia -> Peerdesk, Helia's DAG", "hh")
        show("hh256", "Helia -> Helia, Peerdesk's DAG")
        show("ph", "Peerdesk -> Helia, Peerdesk's DAG", "hh256")
        show("bare", "bare py-libp2p stream (baseline)")
        show("pp", "Peerdesk -> Peerdesk", "bare")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if NODE is not None and not (HERE / "node_modules" / "helia").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True)
    trio.run(main, args.size_mib, args.rounds)
