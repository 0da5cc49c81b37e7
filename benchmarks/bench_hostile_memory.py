"""What hostile peers can make a peer hold in memory, each figure next to the unbounded
baseline measured in the same run (each case in a fresh child process, so one's freed memory
does not flatter the next):

- getfile: 16 GetFile requests for a 24 MiB file from a peer that never reads, all answered
  at once; streamed (as served now) against built whole (the old answer: the file in memory
  as bytes, base64 and JSON).

- flood: a flooder process writes thousands of signed GossipSub messages to a topic the
  victim is in, as fast as its stream takes them, while an honest peer publishes 20 and sends
  a direct message; with the per-peer in-flight budget (``compat.GuardedPubsub``, as run now)
  against it switched off (limits infinite, a full subscription drops at once: the library's
  behaviour, one task per message read).

    .venv/bin/python benchmarks/bench_hostile_memory.py [--file-mib 24] [--requests 16]
        [--flood 20000] [--flood-size 256] [--per-rpc 500] [--only getfile|flood]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MiB = 1024 * 1024


async def getfile_peak(mode: str, file_mib: int, requests: int, folder: Path) -> int:
    """Peak RSS growth (bytes) while ``requests`` unread GetFile answers are in progress."""
    import os
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    import trio

    from core.files import fileproto
    from core.ipfs import dagpb
    from tests.conftest import peer_group
    from tests.core.server.test_hostile_local import rss_bytes
    from tests.test_hostile_peers import dial, getfile_requests, hostile_host, stores

    fileproto.ANSWERS_PER_PEER = requests
    fileproto.ANSWERS = 2 * requests
    async with peer_group(1, config=stores(folder)) as [(victim, _)]:
        files = victim.require_files()
        cid, _ = await files.store_file("big.bin", os.urandom(file_mib * MiB))
        if mode == "whole":

            @asynccontextmanager
            async def whole(wanted: str) -> AsyncIterator[fileproto.Answer]:
                key = dagpb.parse_cid(wanted)
                yield await trio.to_thread.run_sync(files.tree.content_sync, key)

            files.service.content = whole
        before = rss_bytes()
        peak = 0
        async with hostile_host() as evil:
            await dial(evil, victim)
            await getfile_requests(evil, victim, cid, requests)
            for _ in range(40):
                peak = max(peak, rss_bytes() - before)
                await trio.sleep(0.1)
    return peak


async def flood_outcome(mode: str, args: argparse.Namespace, folder: Path) -> str:
    """The flood case's figures, one JSON line."""
    import dataclasses
    import json

    from core import libp2p_compat as compat
    from tests.test_hostile_pubsub_flood import flood_victim

    if mode == "unbudgeted":
        compat.GuardedPubsub.peer_budget_messages = sys.maxsize
        compat.GuardedPubsub.peer_budget_bytes = sys.maxsize
        compat.GuardedPubsub.delivery_wait = 0.0
    import trio

    started = trio.current_time()
    got = await flood_victim(folder, args.flood, args.flood_size, args.per_rpc)
    figures = dataclasses.asdict(got)
    figures["seconds"] = trio.current_time() - started
    return json.dumps(figures)


def child(case: str, mode: str, args: argparse.Namespace) -> int | str:
    import tempfile

    import trio

    from core.libp2p_compat import quiet_library_logging

    quiet_library_logging()
    with tempfile.TemporaryDirectory() as folder:
        if case == "getfile":
            return trio.run(getfile_peak, mode, args.file_mib, args.requests, Path(folder))
        if case == "flood":
            return trio.run(flood_outcome, mode, args, Path(folder))
    raise SystemExit(f"unknown case {case}")


def run_child(case: str, mode: str, args: argparse.Namespace) -> str:
    out = subprocess.run(
        [sys.executable, __file__, "--child", case, mode, *argv_of(args)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return out.stdout.strip().splitlines()[-1]


def argv_of(args: argparse.Namespace) -> list[str]:
    return [
        *("--file-mib", str(args.file_mib), "--requests", str(args.requests)),
        *("--flood", str(args.flood), "--flood-size", str(args.flood_size)),
        *("--per-rpc", str(args.per_rpc)),
    ]


def flood_line(mode: str, figures: dict[str, float | int | str | None]) -> str:
    dm = figures["dm_seconds"]
    return (
        f"  {mode:>10}: peak RSS +{int(figures['peak_rss'] or 0) / MiB:.0f} MiB, up to "
        f"{figures['peak_in_flight']} of the flooder's messages in flight, honest lost "
        f"{figures['honest_lost']}/20, honest DM "
        f"{'not acked in 10 s' if dm is None else f'acked in {float(dm):.2f} s'}, flood "
        f"delivered {figures['flood_delivered']}, {float(figures['seconds'] or 0):.0f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--file-mib", type=int, default=24)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--flood", type=int, default=20000)
    parser.add_argument("--flood-size", type=int, default=256)
    parser.add_argument("--per-rpc", type=int, default=500)
    parser.add_argument("--only", choices=("getfile", "flood"))
    parser.add_argument("--child", nargs=2, metavar=("CASE", "MODE"))
    args = parser.parse_args()
    if args.child:
        print(child(args.child[0], args.child[1], args))
        return
    if args.only in (None, "getfile"):
        streamed = int(run_child("getfile", "streamed", args))
        whole = int(run_child("getfile", "whole", args))
        print(
            f"getfile: {args.requests} unread answers of a {args.file_mib} MiB file: peak RSS "
            f"+{streamed / MiB:.0f} MiB streamed, +{whole / MiB:.0f} MiB built whole (baseline)"
        )
    if args.only in (None, "flood"):
        import json

        print(
            f"flood: {args.flood} signed messages of {args.flood_size} bytes, {args.per_rpc} "
            "to an RPC, from one peer, 20 honest ones and a DM from another:"
        )
        for mode in ("budgeted", "unbudgeted"):
            print(flood_line(mode, json.loads(run_child("flood", mode, args))), flush=True)


if __name__ == "__main__":
    main()
