"""File fetch and DHT lookups in the swarm lab (tests/swarmlab_ops.py), all in one run:

- DHT: every member looks up a random other member it is not connected to (``find_peer``,
  a walk: it hangs up first) and the topic's providers (``find_providers``); p50 / p99 /
  max times and how many succeeded;
- baseline: one fetcher alone fetches a file of ``--size-mib`` (16) from the peer that
  stored it;
- then ``--fetchers`` (20) others fetch the same file at once, every one connected to every
  other: time per fetcher p50 / p99 next to the baseline, the original peer's upload as a
  share of size x fetchers, what the others uploaded, duplicate bytes; every copy is
  byte-verified (SHA-256 and size).

Every peer is a process in a namespace of its own on the lab's public net (a few members
behind NAT routers for the DHT part; fetchers are public).

    sudo .venv/bin/python benchmarks/bench_swarm_files.py [--fetchers 20] [--size-mib 16]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import netlab
from tests.swarmlab import TOPIC, percentile
from tests.swarmlab_ops import OpsSwarm, connect_all


def _times(values: list[float]) -> str:
    if not values:
        return "none"
    return (
        f"p50 {percentile(values, 0.5):.2f} s, p99 {percentile(values, 0.99):.2f} s, "
        f"max {max(values):.2f} s"
    )


def dht_lookups(swarm: OpsSwarm) -> None:
    peers = swarm.live
    swarm.each(lambda p: p.runner.call("subscribe", topic=TOPIC, timeout=90), peers)
    time.sleep(10)  # advertisements out, rendezvous done
    targets = {p.name: random.choice([q for q in peers if q is not p]) for p in peers}
    walks = swarm.each(
        lambda p: p.runner.call("find_peer_unconnected", peer=targets[p.name].id, timeout=30),
        peers,
    )
    ok = [w["took"] for w in walks if w["found"]]
    print(f"find_peer (not connected, a DHT walk): {len(ok)}/{len(walks)} found; {_times(ok)}")
    ids = {p.id for p in peers}
    answers = swarm.each(
        lambda p: p.runner.call("providers", topic=TOPIC, within=20, timeout=30), peers
    )
    complete = sum(
        1 for p, a in zip(peers, answers, strict=True) if ids - {p.id} <= set(a["peers"])
    )
    found = [len(ids & set(a["peers"])) for a in answers]
    print(
        f"find_providers (topic of {len(ids)}): {_times([a['took'] for a in answers])}; "
        f"members found per lookup min {min(found)} / mean {sum(found) / len(found):.1f}; "
        f"{complete}/{len(answers)} lookups found all"
    )


def fetches(swarm: OpsSwarm, fetchers: int, size: int) -> None:
    origin, alone, crowd = swarm.members[0], swarm.members[1], swarm.members[2 : 2 + fetchers]
    stored = origin.runner.call("store_file", size=size, seed=11, timeout=120)
    lacking = connect_all(swarm, [origin, alone])
    assert not lacking, lacking
    base = alone.runner.call("fetch_file", cid=stored["cid"], timeout=600)
    assert (base["size"], base["sha256"]) == (size, stored["sha256"])
    sent_before = origin.runner.call("bitswap_stats")["bytes_sent"]
    print(
        f"baseline, one fetcher alone: {base['took']:.2f} s ({size / base['took'] / 1e6:.1f} MB/s)"
    )
    swarm.exit(alone)  # it has the file now, and would serve the crowd
    lacking = connect_all(swarm, [origin, *crowd])
    assert not lacking, lacking
    before = swarm.each(lambda p: p.runner.call("bitswap_stats"), [origin, *crowd])
    start = time.monotonic()
    results = swarm.each(
        lambda p: p.runner.call("fetch_file", cid=stored["cid"], timeout=900), crowd
    )
    wall = time.monotonic() - start
    bad = [p.name for p, r in zip(crowd, results, strict=True) if r["sha256"] != stored["sha256"]]
    after = swarm.each(lambda p: p.runner.call("bitswap_stats"), [origin, *crowd])
    sent = [a["bytes_sent"] - b["bytes_sent"] for a, b in zip(after, before, strict=True)]
    dups = sum(
        a["duplicate_bytes"] - b["duplicate_bytes"] for a, b in zip(after, before, strict=True)
    )
    wanted = size * len(crowd)
    took = [r["took"] for r in results]
    print(
        f"{len(crowd)} fetchers at once: per fetcher {_times(took)} "
        f"(baseline alone {base['took']:.2f} s); all done in {wall:.1f} s; "
        f"{len(crowd) - len(bad)}/{len(crowd)} byte-verified"
    )
    print(
        f"original peer uploaded {sent[0] / 1e6:.1f} MB = {sent[0] / wanted:.0%} of size x "
        f"fetchers ({wanted / 1e6:.0f} MB; alone it sent {sent_before / 1e6:.1f} MB for one); "
        f"fetchers uploaded {sum(sent[1:]) / 1e6:.1f} MB, {sum(1 for s in sent[1:] if s)} of "
        f"them served others; duplicates {dups / 1e6:.1f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fetchers", type=int, default=20)
    parser.add_argument("--size-mib", type=int, default=16)
    parser.add_argument("--behind-nat", type=int, default=3)
    args = parser.parse_args()
    if netlab.unavailable():
        sys.exit(netlab.unavailable())
    with netlab.Lab(prefix=f"pdbf{random.randrange(16**4):04x}") as lab:
        swarm = OpsSwarm(lab)
        started = time.monotonic()
        swarm.add(args.fetchers + 2, behind_nat=0)
        nat = swarm.add(args.behind_nat, behind_nat=args.behind_nat)
        print(
            f"{len(swarm.members)} members ({len(nat)} behind NAT) + 2 bootstrap peers "
            f"started in {time.monotonic() - started:.0f} s"
        )
        dht_lookups(swarm)
        for peer in nat:  # the fetch part is among public peers
            swarm.exit(peer)
        fetches(swarm, args.fetchers, args.size_mib * 1024 * 1024)


if __name__ == "__main__":
    main()
