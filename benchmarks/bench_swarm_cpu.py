"""What a topic costs each peer in CPU: N Peerdesk peers in a full mesh on loopback, one topic,
at rest and under paced publishing, next to the same workload with py-libp2p's own locks
(``compat.quicken_locks`` undone), measured alternately in one run.

Why it exists: the 50-member swarm (bench_swarm.py) keeps a 2-core box 100 % busy, so every
figure there is the machine's. This one measures the per-peer cost the swarm multiplies.

    .venv/bin/python benchmarks/bench_swarm_cpu.py [--peers 12] [--rate 5] [--rounds 3]
        [--processes 1]

``--processes M`` spreads the peers over M processes (one event loop each; the swarm lab runs
one peer per process): the CPU figures say whether sharing an interpreter saves any.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TOPIC = "bench-cpu"
SETTLE = 20.0
"""Seconds after the last subscribe before measuring: meshes form, DHT lookups finish."""
WINDOW = 30.0
"""Seconds of each measurement (at rest, then under traffic)."""
LIBRARY_LOCKS = "PEERDESK_BENCH_LIBRARY_LOCKS"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _everyone(folder: str, processes: int) -> list[str] | None:
    """Every process's peer addresses in process order, once all have written theirs."""
    files = [Path(folder, f"{i}.json") for i in range(processes)]
    if not all(f.exists() for f in files):
        return None
    return [a for f in files for a in json.loads(f.read_text())]


def child(index: int, processes: int, per: int, rate: float, start_at: float, folder: str) -> None:
    """One process of the run: ``per`` peers, dialling every peer of a lower number."""
    import trio

    from core.libp2p_compat import locks, quiet_library_logging
    from core.peer import PeerConfig, new_peer

    quiet_library_logging()
    if os.environ.get(LIBRARY_LOCKS):
        for cls in locks.QUICK:
            cls.__init__ = cls.__init__.__wrapped__  # type: ignore[attr-defined,misc]
    received = 0

    def emit(event: Any) -> None:
        nonlocal received
        if type(event).__name__ == "TopicData":
            received += 1

    async def run() -> None:
        config = PeerConfig(listen_addrs=["/ip4/127.0.0.1/tcp/0"], dht_ready_wait=1.0)
        peers = [new_peer(config, emit) for _ in range(per)]
        async with trio.open_nursery() as nursery:
            for peer in peers:
                await nursery.start(peer.run)
            mine = json.dumps([p.listen_addrs()[0] for p in peers])
            Path(folder, f"{index}.json.tmp").write_text(mine)  # noqa: ASYNC240 (tiny, once)
            os.replace(Path(folder, f"{index}.json.tmp"), Path(folder, f"{index}.json"))
            with trio.fail_after(60):
                while (everyone := _everyone(folder, processes)) is None:
                    await trio.sleep(0.1)
            for n, peer in enumerate(peers, start=index * per):
                for addr in everyone[:n]:
                    with trio.move_on_after(10):
                        await peer.connect(addr)
            for peer in peers:
                await peer.subscribe(TOPIC)
            await trio.sleep(max(0.0, start_at - time.time()))
            rest0 = _cpu()
            await trio.sleep(WINDOW)
            rest1, got0 = _cpu(), received
            sent, began = 0, time.monotonic()
            while time.monotonic() - began < WINDOW:
                await peers[sent % per].publish(TOPIC, {"n": sent, "from": index})
                sent += 1
                await trio.sleep(max(0.0, began + sent * processes / rate - time.monotonic()))
            traffic1 = _cpu()
            await trio.sleep(2)  # the last messages in flight
            conns = [len(p.host.get_network().get_connections_map()) for p in peers]
            figures = {"rest": rest1 - rest0, "traffic": traffic1 - rest1, "sent": sent}
            figures |= {"received": received - got0, "connections": conns}
            print(json.dumps(figures), flush=True)
            for peer in peers:
                peer.stop()
            nursery.cancel_scope.cancel()

    trio.run(run)


def measure(peers: int, processes: int, rate: float, library_locks: bool) -> dict[str, Any]:
    per = peers // processes
    env = dict(os.environ)
    env.pop(LIBRARY_LOCKS, None)
    if library_locks:
        env[LIBRARY_LOCKS] = "1"
    with tempfile.TemporaryDirectory(prefix="pdcpu-") as folder:
        start_at = time.time() + 10 + processes + 0.1 * peers * peers / processes + SETTLE
        args = [str(processes), str(per), str(rate), str(start_at), folder]
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--child", str(i), *args],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for i in range(processes)
        ]
        outs = []
        for proc in procs:
            out, _ = proc.communicate(timeout=start_at - time.time() + 3 * WINDOW + 60)
            outs.append(json.loads(out.strip().splitlines()[-1]))
    total = {k: sum(o[k] for o in outs) for k in ("rest", "traffic", "sent", "received")}
    total["connections"] = [c for o in outs for c in o["connections"]]
    return total


def report(label: str, runs: list[dict[str, Any]], peers: int) -> None:
    rest = [100 * r["rest"] / WINDOW / peers for r in runs]
    traffic = [100 * r["traffic"] / WINDOW / peers for r in runs]
    per_msg = [1000 * (r["traffic"] - r["rest"]) / peers / max(1, r["sent"]) for r in runs]
    delivered = [r["received"] / max(1, r["sent"] * peers) for r in runs]  # own ones too
    conns = [c for r in runs for c in r["connections"]]
    print(
        f"{label}: at rest {statistics.median(rest):.2f} % of a core per peer, under traffic "
        f"{statistics.median(traffic):.2f} % ({', '.join(f'{t:.2f}' for t in traffic)}); "
        f"{statistics.median(per_msg):.2f} ms of CPU per message per peer; delivered "
        f"{min(delivered):.0%}..{max(delivered):.0%} of sent x peers; connections per "
        f"peer {min(conns)}..{max(conns)}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=int, default=12)
    parser.add_argument("--processes", type=int, default=1, help="processes the peers share")
    parser.add_argument("--rate", type=float, default=5.0, help="messages/s over the mesh")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each kind")
    args = parser.parse_args()
    if args.peers % args.processes:
        sys.exit("--peers must be a multiple of --processes")
    print(
        f"{args.peers} peers in {args.processes} process(es), full mesh, {args.rate} msgs/s, "
        f"{WINDOW:.0f} s windows, {args.rounds} rounds; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    ours: list[dict[str, Any]] = []
    library: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        library.append(measure(args.peers, args.processes, args.rate, library_locks=True))
        ours.append(measure(args.peers, args.processes, args.rate, library_locks=False))
    report("Peerdesk", ours, args.peers)
    report("baseline, py-libp2p's own locks", library, args.peers)
    ratio = statistics.median(r["traffic"] for r in ours) / statistics.median(
        r["traffic"] for r in library
    )
    print(f"CPU under traffic, Peerdesk / baseline: {ratio:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        a = sys.argv[2:]
        child(int(a[0]), int(a[1]), int(a[2]), float(a[3]), float(a[4]), a[5])
    else:
        main()
