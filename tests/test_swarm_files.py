"""File fetch by a swarm: one peer stores a file, many fetch it at once by bitswap from everyone
connected, each byte-verified; the peers that have blocks serve the others, so the first peer
uploads far less than one copy per fetcher, and no block comes twice to anyone. In the
namespace lab (tests/swarmlab_ops.py: each peer a process of its own) and, without root, with
peers on loopback in this process. The 20-fetcher, 16 MiB run with figures is
benchmarks/bench_swarm_files.py.

The lab test needs root and ``ip`` / ``iptables`` (skipped with the reason otherwise). Bounds
are generous: outcomes are asserted, not speed.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from core.ipfs import dagpb
from core.peer import PeerConfig
from tests import netlab
from tests.conftest import connect, fast_config, peer_group
from tests.swarmlab_ops import OpsSwarm, connect_all, file_bytes

lab = pytest.mark.skipif(bool(netlab.unavailable()), reason=netlab.unavailable() or "ok")

FETCHERS = 9
SIZE = 16 * 1024 * 1024


def _check_spread(
    sent: list[int], duplicates: int, size: int, fetchers: int, *, first_at_most: float
) -> None:
    """``sent[0]`` is the first peer's upload; every fetcher got ``size`` bytes. (Before
    fetchers served each other, the first peer sent 99 % and the swarm 3.7 copies per
    fetcher on loopback.)"""
    wanted = size * fetchers
    # Every fetcher got the whole file, so the swarm sent at least that much in all ...
    assert sum(sent) >= wanted
    # ... little of it twice ...
    assert duplicates <= 0.2 * wanted and sum(sent) <= 1.2 * wanted, (sent, duplicates)
    # ... and the first peer carried well under all of it: the fetchers served each other.
    assert sent[0] < first_at_most * wanted, (
        f"the first peer sent {sent[0] / wanted:.0%} of {wanted} bytes"
    )
    assert sum(1 for s in sent[1:] if s > 0) >= fetchers // 2, sent


@pytest.fixture(scope="module")
def swarm() -> Iterator[OpsSwarm]:
    with netlab.Lab(prefix=f"pdsf{random.randrange(16**4):04x}") as lab:
        swarm = OpsSwarm(lab)
        swarm.add(FETCHERS + 1)
        yield swarm


@lab
def test_a_file_fetched_by_many_processes_at_once_arrives_whole_and_is_served_by_many(
    swarm: OpsSwarm,
) -> None:
    origin, fetchers = swarm.members[0], swarm.members[1:]
    lacking = connect_all(swarm, swarm.members)
    assert not lacking, f"members not connected to each other: {lacking}"
    stored = origin.runner.call("store_file", size=SIZE, seed=7, timeout=60)
    results = swarm.each(
        lambda p: p.runner.call("fetch_file", cid=stored["cid"], timeout=200), fetchers
    )
    for peer, got in zip(fetchers, results, strict=True):
        assert (got["size"], got["sha256"]) == (SIZE, stored["sha256"]), peer.name
    stats = swarm.each(lambda p: p.runner.call("bitswap_stats"), swarm.members)
    _check_spread(
        [s["bytes_sent"] for s in stats],
        sum(s["duplicate_bytes"] for s in stats),
        SIZE,
        FETCHERS,
        first_at_most=0.7,
    )


async def test_a_file_fetched_by_many_peers_at_once_is_served_by_many(tmp_path: Path) -> None:
    """The same on loopback, every peer connected to every other (5 fetchers, 8 MiB)."""
    fetchers, size = 5, 8 * 1024 * 1024
    names = iter(range(fetchers + 1))

    def config() -> PeerConfig:
        return fast_config(files_dir=str(tmp_path / f"peer{next(names)}"))

    data = file_bytes(size, 3)
    async with peer_group(fetchers + 1, config=config) as group:
        peers = [p for p, _ in group]
        origin = peers[0]
        cid, _root = await origin.require_files().store_file("big.bin", data)
        for i, a in enumerate(peers):
            for b in peers[i + 1 :]:
                await connect(a, b)
        key = dagpb.parse_cid(cid)
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for p in peers[1:]:
                    nursery.start_soon(p.require_files().fetch, key)
        for p in peers[1:]:
            got = b"".join(p.require_files().tree.read(key))
            assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        engines = [p.require_files().bitswap for p in peers]
        # One process: the first peer answers as fast as the others, so it keeps more share.
        duplicates = sum(e.duplicate_bytes for e in engines)
        _check_spread(
            [e.bytes_sent for e in engines], duplicates, size, fetchers, first_at_most=0.85
        )
