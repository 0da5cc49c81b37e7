"""The 50-peer swarm in the namespace lab (tests/swarmlab.py; needs root).

Members know only the two bootstrap peers (public; the first is also a relay), some sit behind
NAT routers; all join one topic through DHT rendezvous. Prints: time until every member list
holds all other members, delivery latency p50/p99 and lost count over steady traffic with churn
(peers SIGKILLed and exiting cleanly, new ones joining), mesh sizes, connections, CPU and RSS
per peer (at the start and end of the traffic, to see them flat), DHT lookup times, and — the
baseline, same lab and run — delivery latency between the two bootstrap peers alone.

    sudo .venv/bin/python benchmarks/bench_swarm.py [--peers 50] [--nat 5] [--duration 60]

Loads the whole machine: every peer is a process (~90 MB).
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import netlab, swarmlab
from tests.swarmlab import TOPIC, Swarm, SwarmPeer, percentile


def _add(swarm: Swarm, count: int, nat: int, batch: int = 4) -> list[SwarmPeer]:
    """Start in batches: each start imports py-libp2p (~1 s of CPU) within a 30 s deadline."""
    peers: list[SwarmPeer] = []
    while count > 0:
        n = min(batch, count)
        behind = min(nat, n)
        peers += swarm.add(n, behind_nat=behind)
        count, nat = count - n, nat - behind
    return peers


def _baseline(swarm: Swarm) -> float:
    """p50 delivery between the two bootstrap peers alone, in ms."""
    a, b = swarm.bootstrap
    topic = "swarm-baseline"
    swarm.each(lambda p: p.runner.call("subscribe", topic=topic, timeout=30), [a, b])
    for seq in range(30):
        a.runner.call("publish", topic=topic, data=swarmlab.message(a, seq))
        time.sleep(0.05)
    time.sleep(1)
    return 1000 * median(e["at"] - e["data"]["t"] for e in b.received(topic))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--peers", type=int, default=50)
    parser.add_argument("--nat", type=int, default=5, help="members behind NAT routers")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of traffic")
    parser.add_argument("--rate", type=float, default=5.0, help="messages/s over the swarm")
    parser.add_argument("--churn", type=int, default=10, help="peers leaving (half SIGKILLed)")
    args = parser.parse_args()
    if why := netlab.unavailable():
        sys.exit(why)
    with netlab.Lab(prefix=f"pdsb{random.randrange(16**4):04x}") as lab:
        swarm = Swarm(lab)
        base_ms = _baseline(swarm)
        idle_rss = swarm.bootstrap[1].runner.call("stats")["rss_mib"]
        t = time.monotonic()
        _add(swarm, args.peers, args.nat)
        took = time.monotonic() - t
        print(f"{args.peers} members started ({args.nat} behind NAT) in {took:.0f} s")

        t = time.monotonic()
        swarm.each(lambda p: p.runner.call("subscribe", topic=TOPIC, timeout=120))
        wrong = swarm.wait_members(180)
        converged = time.monotonic() - t
        print(
            f"member lists: {'all complete' if not wrong else f'{len(wrong)} incomplete'} "
            f"after {converged:.1f} s"
            + (f" (missing: {sum(len(v) for v in wrong.values())} entries)" if wrong else "")
        )

        start_stats = {p.name: p.runner.call("stats") for p in swarm.live}
        sent: list[tuple[SwarmPeer, int, float]] = []
        subscribed_at: dict[str, float] = {p.name: 0.0 for p in swarm.live}
        died_at: dict[str, float] = {}
        stop = threading.Event()

        def traffic() -> None:
            seq = 0
            while not stop.is_set():
                live = swarm.live
                sender = live[seq % len(live)]
                try:
                    msg = swarmlab.message(sender, seq)
                    sender.runner.call("publish", topic=TOPIC, data=msg, timeout=30)
                    sent.append((sender, seq, msg["t"]))
                except Exception:
                    pass  # a peer leaving during its publish; not counted as sent
                seq += 1
                time.sleep(1 / args.rate)

        pump = threading.Thread(target=traffic)
        pump.start()
        try:
            time.sleep(args.duration / 3)
            leaving = random.sample(swarm.live, args.churn)
            for i, peer in enumerate(leaving):
                died_at[peer.name] = time.time()
                (swarm.kill if i % 2 == 0 else swarm.exit)(peer)
            newcomers = _add(swarm, args.churn, min(2, args.churn))
            swarm.each(lambda p: p.runner.call("subscribe", topic=TOPIC, timeout=120), newcomers)
            for p in newcomers:
                subscribed_at[p.name] = time.time() + 5  # time to find the others
            time.sleep(args.duration * 2 / 3)
        finally:
            stop.set()
            pump.join(timeout=60)
        time.sleep(5)

        latencies: list[float] = []
        lost = expected = 0
        for receiver in swarm.live:
            got = {(e["data"]["from"], e["data"]["seq"]): e["at"] for e in receiver.received()}
            for sender, seq, at in sent:
                if sender is receiver or at < subscribed_at.get(receiver.name, 0.0):
                    continue
                if sender.name in died_at and died_at[sender.name] < at + 2:
                    continue  # in flight when its sender went away
                expected += 1
                if (sender.id, seq) in got:
                    latencies.append(got[(sender.id, seq)] - at)
                else:
                    lost += 1
        print(
            f"delivery over {args.duration:.0f} s ({len(sent)} messages, {expected} deliveries "
            f"expected): p50 {1000 * percentile(latencies, 0.5):.0f} ms, "
            f"p99 {1000 * percentile(latencies, 0.99):.0f} ms, lost {lost}; "
            f"baseline, 2 peers alone: p50 {base_ms:.1f} ms"
        )
        wrong = swarm.wait_members(60)
        print(f"after churn, member lists: {len(wrong)} incomplete")

        mesh = swarm.each(lambda p: len(p.runner.call("mesh").get(TOPIC, [])))
        end_stats = swarm.each(lambda p: p.runner.call("stats"))
        print(f"mesh sizes: min {min(mesh)}, max {max(mesh)} (D_lo 5, D_hi 12)")
        conns = [s["connections"] for s in end_stats]
        print(f"connections per peer: max {max(conns)}, median {median(conns)} (high water 400)")
        cpu = [
            (s["cpu_s"] - start_stats[p.name]["cpu_s"]) / (args.duration + 5)
            for p, s in zip(swarm.live, end_stats, strict=True)
            if p.name in start_stats
        ]
        print(
            f"CPU per peer during traffic: median {100 * median(cpu):.1f} %, "
            f"max {100 * max(cpu):.1f} % of a core"
        )
        rss0 = [start_stats[p.name]["rss_mib"] for p in swarm.live if p.name in start_stats]
        rss1 = [s["rss_mib"] for p, s in zip(swarm.live, end_stats, strict=True)
                if p.name in start_stats]  # fmt: skip
        print(
            f"RSS per peer: start median {median(rss0):.0f} / max {max(rss0):.0f} MiB, "
            f"end median {median(rss1):.0f} / max {max(rss1):.0f} MiB "
            f"(an idle peer: {idle_rss:.0f} MiB)"
        )

        live = swarm.live
        peer_times, provider_times, found = [], [], 0
        for asker in random.sample(live, min(10, len(live))):
            target = random.choice([p for p in live if p is not asker])
            r = asker.runner.call("find_peer", peer=target.id, timeout=30)
            found += r["found"]
            peer_times.append(r["took"])
            r = asker.runner.call("find_providers", topic=TOPIC, timeout=30)
            provider_times.append(r["took"])
        print(
            f"DHT find_peer: {found}/{len(peer_times)} found, "
            f"median {1000 * median(peer_times):.0f} ms, "
            f"max {1000 * max(peer_times):.0f} ms; find_providers: median "
            f"{1000 * median(provider_times):.0f} ms, max {1000 * max(provider_times):.0f} ms"
        )


if __name__ == "__main__":
    main()
