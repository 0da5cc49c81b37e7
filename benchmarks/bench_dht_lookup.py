"""What a topic lookup costs in CPU: N Peerdesk peers in one topic (found through DHT rendezvous,
one process, loopback), each looking up the topic's providers in turn, next to the same
lookups with py-libp2p's own record checks and server stream handling, alternating in one run.

Why it exists: in the swarm every member looks its topics up again and again while the topic
grows (core/network/dht.py), and each GET_PROVIDERS answer names every provider with its
signed record. The baseline undoes two compat changes: ``records.checked_before`` (a record's
bytes that passed are not checked again) and ``GoLikeKadDHT`` (a server closes a finished
request's stream; the library resets it).

    .venv/bin/python benchmarks/bench_dht_lookup.py [--peers 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio
from libp2p.kad_dht.kad_dht import KadDHT

from core import libp2p_compat as compat
from core.libp2p_compat import records
from core.peer import PeerConfig, new_peer

TOPIC = "bench-lookup"
SETTLE = 40.0
"""Seconds after the last subscribe: everyone advertised and connected to everyone."""
OURS = (records.RECORD_RECHECK, compat.GoLikeKadDHT._do_handle_stream)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _use(library: bool) -> None:
    """Peerdesk's record checks and server streams, or the library's."""
    records.RECORD_RECHECK = 0.0 if library else OURS[0]
    compat.GoLikeKadDHT._do_handle_stream = (  # type: ignore[method-assign]
        KadDHT._do_handle_stream if library else OURS[1]
    )


async def run(count: int, rounds: int) -> None:
    config = PeerConfig(listen_addrs=["/ip4/127.0.0.1/tcp/0"], dht_ready_wait=1.0)
    peers = [new_peer(config, lambda _event: None) for _ in range(count)]
    async with trio.open_nursery() as nursery:
        for peer in peers:
            await nursery.start(peer.run)
        for peer in peers[1:]:
            await peer.connect(peers[0].listen_addrs()[0])
        for peer in peers:
            await peer.subscribe(TOPIC)
        await trio.sleep(SETTLE)
        conns = [len(p.host.get_network().get_connections_map()) for p in peers]
        print(f"connections per peer {min(conns)}..{max(conns)}", flush=True)
        cost: dict[bool, list[float]] = {False: [], True: []}
        wall: dict[bool, list[float]] = {False: [], True: []}
        found: dict[bool, list[int]] = {False: [], True: []}
        for _ in range(rounds):
            for library in (True, False):
                _use(library)
                cpu0 = _cpu()
                for peer in peers:
                    start = trio.current_time()
                    answer = await peer.dht.find_topic_peers(TOPIC)
                    wall[library].append(trio.current_time() - start)
                    found[library].append(len(answer))
                cost[library].append(1000 * (_cpu() - cpu0) / count)
        _use(False)
        for library, label in ((False, "Peerdesk"), (True, "baseline, the library's checks")):
            print(
                f"{label}: {statistics.median(cost[library]):.1f} ms of CPU per lookup "
                f"({', '.join(f'{c:.1f}' for c in cost[library])}), wall p50 "
                f"{1000 * statistics.median(wall[library]):.0f} ms, providers found median "
                f"{statistics.median(found[library]):.0f} of {count - 1}",
                flush=True,
            )
        ratio = statistics.median(cost[False]) / statistics.median(cost[True])
        print(f"CPU per lookup, Peerdesk / baseline: {ratio:.2f}", flush=True)
        for peer in peers:
            peer.stop()
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each")
    args = parser.parse_args()
    compat.quiet_library_logging()
    print(
        f"{args.peers} peers in one process, one topic, each looking it up in turn "
        f"(both rendezvous names); load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    trio.run(run, args.peers, args.rounds)


if __name__ == "__main__":
    main()
