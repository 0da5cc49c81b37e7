"""What a connection costs in CPU: ``--peers`` new peers in one process (loopback) connecting to
one more, both ends counted, until each side has the other's pubsub stream; Peerdesk peers
against bare py-libp2p hosts with the library's GossipSub configured as Peerdesk configures it
(bench_messaging_baseline.py), a round of each in turn, each round a process of its own (the
bare one must not import ``core``: that installs Peerdesk's compat changes).

Why it exists: a full member list in an N-member topic is N(N-1)/2 connections, and in the
50-member lab setting them up is a large part of the CPU the swarm runs short of (README,
Swarm). A Peerdesk connection runs Noise, Yamux, identify both ways, a pubsub stream each way,
the profile exchange and the DHT's first asks; a bare one all but the last two.

    .venv/bin/python benchmarks/bench_connect_cpu.py [--peers 20] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import trio

IDLE = 2.0
"""Seconds of rest measured before the dials, taken off the round's CPU."""
BOUND = 60.0
"""Longest the connections may take to carry pubsub both ways."""
ARMS = ("peerdesk", "bare")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(dial_all: Callable[[], Awaitable[None]], both_ways: Callable[[], bool]) -> float:
    """CPU (s) of the dials and what they start, the rest before them taken off."""
    await trio.sleep(1.0)  # start-up runs out
    cpu0, t0 = _cpu(), trio.current_time()
    await trio.sleep(IDLE)
    rest = (_cpu() - cpu0) / (trio.current_time() - t0)
    cpu0, t0 = _cpu(), trio.current_time()
    await dial_all()
    with trio.fail_after(BOUND):
        while not both_ways():
            await trio.sleep(0.05)
    await trio.sleep(1.0)  # what the connections start (DHT asks, profile) runs out
    return _cpu() - cpu0 - rest * (trio.current_time() - t0)


async def _peerdesk_round(count: int) -> float:
    from core.peer import PeerConfig, new_peer

    config = PeerConfig(listen_addrs=["/ip4/127.0.0.1/tcp/0"], dht_ready_wait=1.0)
    hub, *spokes = [new_peer(config, lambda _event: None) for _ in range(count + 1)]
    async with trio.open_nursery() as nursery:
        for peer in (hub, *spokes):
            await nursery.start(peer.run)

        async def dial_all() -> None:
            async with trio.open_nursery() as dials:
                for spoke in spokes:
                    dials.start_soon(spoke.connect, hub.listen_addrs()[0])

        def both_ways() -> bool:
            return all(
                s.peer_id in hub.pubsub.peers and hub.peer_id in s.pubsub.peers for s in spokes
            )

        cost = await _measure(dial_all, both_ways)
        for peer in (hub, *spokes):
            peer.stop()
    return cost


async def _bare_round(count: int) -> float:
    import multiaddr
    from bench_messaging_baseline import LISTEN, bare_gossip, bare_host
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.tools.anyio_service import background_trio_service

    async with AsyncExitStack() as stack:
        nodes: list[tuple[Any, Any]] = []
        for _ in range(count + 1):
            host = bare_host()
            pubsub, router = bare_gossip(host, "1.2")
            await stack.enter_async_context(host.run(LISTEN))
            await stack.enter_async_context(background_trio_service(pubsub))
            await stack.enter_async_context(background_trio_service(router))
            await pubsub.wait_until_ready()
            nodes.append((host, pubsub))
        (hub, hub_pubsub), spokes = nodes[0], nodes[1:]
        info = info_from_p2p_addr(multiaddr.Multiaddr(f"{hub.get_addrs()[0]}"))

        async def dial_all() -> None:
            async with trio.open_nursery() as dials:
                for host, _ in spokes:
                    dials.start_soon(host.connect, info)

        def both_ways() -> bool:
            return all(
                h.get_id() in hub_pubsub.peers and hub.get_id() in p.peers for h, p in spokes
            )

        return await _measure(dial_all, both_ways)


def _one_round(arm: str, count: int) -> None:
    """The child's part: one round, its CPU per connection in ms as a JSON line."""
    if arm == "peerdesk":
        from core import libp2p_compat as compat

        compat.quiet_library_logging()
    cost = trio.run(_peerdesk_round if arm == "peerdesk" else _bare_round, count)
    print(json.dumps({"ms": 1000 * cost / count}), flush=True)
    os._exit(0)  # the bare hosts' services need not be wound down one by one


def _spawn(arm: str, count: int) -> float:
    done = subprocess.run(
        [sys.executable, __file__, "--arm", arm, "--peers", str(count)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return float(json.loads(done.stdout.strip().splitlines()[-1])["ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=int, default=20, help="peers connecting to one more")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds of each")
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # a child's one round
    args = parser.parse_args()
    if args.arm:
        _one_round(args.arm, args.peers)
        return
    print(
        f"{args.peers} new peers connecting to one more in one process, both ends counted, "
        f"{args.rounds} rounds of each in turn; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    cost: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for _ in range(args.rounds):
        for arm in ("bare", "peerdesk"):
            cost[arm].append(_spawn(arm, args.peers))
    labels = {"peerdesk": "Peerdesk", "bare": "baseline, bare py-libp2p + its GossipSub"}
    for arm in ARMS:
        print(
            f"{labels[arm]}: {statistics.median(cost[arm]):.1f} ms of CPU per connection "
            f"({', '.join(f'{c:.1f}' for c in cost[arm])})",
            flush=True,
        )
    ratio = statistics.median(cost["peerdesk"]) / statistics.median(cost["bare"])
    print(f"CPU per connection, Peerdesk / baseline: {ratio:.2f}", flush=True)


if __name__ == "__main__":
    main()
