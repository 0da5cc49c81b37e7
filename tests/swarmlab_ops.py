"""The swarm lab (tests/swarmlab.py) with what DHT records, direct messages and file fetching
need: peers with a block store, provider record lifetimes set per run (the real 48 h cannot
be waited for), DHT lookups of peers we are not connected to, and bitswap's byte counts.

Each peer is ``python -m tests.swarmlab_ops``: swarmlab's peer process with a file store in a
temporary folder and these requests on top of swarmlab's:

- ``record_times {ttl, reprovide}``: provider record lifetime and re-advertising pause;
- ``find_peer_unconnected {peer}``: hang up on ``peer`` if connected, then ``Dht.find_peer``
  (a walk: the peer is not connected), timed;
- ``providers {topic, within}``: ``find_providers`` for a topic, given ``within`` seconds
  (swarmlab's ``find_providers`` allows 10), timed;
- ``store_file {size, seed}``: a file of ``size`` pseudo-random bytes made from ``seed``,
  imported; answers its CID and SHA-256;
- ``fetch_file {cid}``: fetch (bitswap from the connected peers), read it back; answers the
  time taken, the size and the SHA-256 of what was read;
- ``send_batch {peer, protocol, data}``: direct messages, one per item of ``data``, queued at
  once; answers whether each was delivered (acknowledged) or failed;
- ``bitswap_stats``: bytes and blocks this peer's bitswap has sent, and the bytes of
  blocks it got twice.

Used by tests/test_swarm_dht.py, tests/test_swarm_files.py and benchmarks/bench_swarm_files.py.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import tempfile
import threading
import time
from typing import Any

import trio

from tests import nat_runner, netlab, swarmlab
from tests.swarmlab import Swarm, SwarmPeer

START_BATCH = 6
"""Peers started at once: each start is ~1 s of CPU importing py-libp2p, and the lab gives a
peer 30 s to come up; on two shared cores a dozen at once can miss that."""


def file_bytes(size: int, seed: int) -> bytes:
    """The same pseudo-random bytes for the same (size, seed), in every process."""
    return random.Random(seed).randbytes(size)


# -- inside a peer process ----------------------------------------------------------------------


async def _ops_handle(peer: Any, req: dict[str, Any]) -> Any:
    op = req["op"]
    if op == "record_times":
        peer.dht.set_record_times(req["ttl"], req["reprovide"])
        return True
    if op == "find_peer_unconnected":
        from libp2p.peer.id import ID

        target = ID.from_base58(req["peer"])
        network = peer.host.get_network()
        was_connected = bool(network.get_connections(target))
        if was_connected:
            await peer.host.disconnect(target)
        connected = bool(network.get_connections(target))
        start = time.monotonic()
        info = None
        with trio.move_on_after(req.get("timeout", 10.0)):
            info = await peer.dht.find_peer(target)
        return {
            "found": info is not None and bool(info.addrs),
            "addrs": [str(a) for a in info.addrs] if info is not None else [],
            "took": time.monotonic() - start,
            "was_connected": was_connected,
            "connected_at_lookup": connected,
        }
    if op == "providers":
        start = time.monotonic()
        found: list[Any] = []
        with trio.move_on_after(req["within"]):
            found = await peer.dht.find_topic_peers(req["topic"])
        return {"peers": sorted(str(i.peer_id) for i in found), "took": time.monotonic() - start}
    if op == "store_file":
        data = await trio.to_thread.run_sync(file_bytes, req["size"], req["seed"])
        cid, _root = await peer.require_files().store_file(req.get("path", "big.bin"), data)
        return {"cid": cid, "sha256": hashlib.sha256(data).hexdigest()}
    if op == "fetch_file":
        from core.ipfs import dagpb

        files = peer.require_files()
        key = dagpb.parse_cid(req["cid"])
        start = time.monotonic()
        with trio.fail_after(req.get("timeout", 120.0)):
            await files.fetch(key)
        took = time.monotonic() - start

        def digest() -> tuple[int, str]:
            h = hashlib.sha256()
            size = 0
            for chunk in files.tree.read(key):
                h.update(chunk)
                size += len(chunk)
            return size, h.hexdigest()

        size, sha = await trio.to_thread.run_sync(digest)
        return {"took": took, "size": size, "sha256": sha}
    if op == "send_batch":
        # Every message's own outcome (nat_runner's send_many stops at the first failure).
        msgs = [peer.enqueue(req["peer"], req["protocol"], d) for d in req["data"]]
        outcomes = []
        for msg in msgs:
            try:
                await msg.wait()
            except Exception:
                pass
            outcomes.append(bool(msg.delivered))
        return outcomes
    if op == "bitswap_stats":
        engine = peer.require_files().bitswap
        return {
            "bytes_sent": engine.bytes_sent,
            "blocks_sent": engine.blocks_sent,
            "duplicate_bytes": engine.duplicate_bytes,
        }
    return await swarmlab._swarm_handle(peer, req)


async def _main(args: argparse.Namespace) -> None:
    """nat_runner.main's peer, with a block store (in a folder removed on exit)."""
    from core.network.direct import DirectConfig
    from core.peer import PeerConfig, new_peer

    folder = tempfile.mkdtemp(prefix="pdswops-")
    try:
        config = PeerConfig(
            listen_addrs=["/ip4/0.0.0.0/tcp/0"],
            bootstrap=args.bootstrap,
            relays=args.relay,
            relay_service=args.relay_service,
            direct=DirectConfig(backoff=(0.5, 1.0), probe_interval=0.5),
            dht_ready_wait=5.0,
            files_dir=folder,
        )
        peer = new_peer(config, nat_runner._emit)
        async with trio.open_nursery() as nursery:
            await nursery.start(peer.run)
            nat_runner._write({"id": 0, "result": peer.info()})
            await nat_runner._serve(peer, nursery)
            peer.stop()
            await peer.stopped.wait()
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", action="append", default=[])
    parser.add_argument("--relay", action="append", default=[])
    parser.add_argument("--relay-service", action="store_true")
    nat_runner._handle = _ops_handle  # type: ignore[assignment]
    nat_runner._emit = swarmlab._stamped_emit  # type: ignore[assignment]
    nat_runner.quiet_library_logging()
    trio.run(_main, parser.parse_args())


# -- the lab side -------------------------------------------------------------------------------


class OpsSwarm(Swarm):
    """A ``Swarm`` whose peers are this module's processes, started a few at a time."""

    runner_module = "tests.swarmlab_ops"

    def add(self, count: int, *, behind_nat: int = 0) -> list[SwarmPeer]:
        """``count`` members, the last ``behind_nat`` of them behind routers."""
        started: list[SwarmPeer] = []
        left_public, left_nat = count - behind_nat, behind_nat
        while left_public or left_nat:
            public = min(left_public, START_BATCH)
            nat = min(left_nat, START_BATCH - public)
            started += super().add(public + nat, behind_nat=nat)
            left_public, left_nat = left_public - public, left_nat - nat
        return started


def connect_all(swarm: Swarm, peers: list[SwarmPeer], timeout: float = 60.0) -> dict[str, int]:
    """Every peer in ``peers`` dials every other one it is not connected to, by the others'
    public or circuit addresses, until all are connected; returns how many each still lacks."""
    ids = {p.id for p in peers}
    deadline = time.monotonic() + timeout
    while True:
        infos = swarm.each(lambda p: p.runner.call("info"), peers)
        addrs = {
            p.id: info["addrs"] + info["relay_addrs"] for p, info in zip(peers, infos, strict=True)
        }
        lacking = {
            p.name: ids - {p.id} - {c["peer"] for c in info["connections"]}
            for p, info in zip(peers, infos, strict=True)
        }
        lacking = {n: m for n, m in lacking.items() if m}
        if not lacking or time.monotonic() > deadline:
            return {n: len(m) for n, m in lacking.items()}
        by_name = {p.name: p for p in peers}
        threads = []
        for name, missing in lacking.items():
            for other in missing:
                for addr in _dialable(addrs[other], other):
                    t = threading.Thread(
                        target=_try_connect, args=(by_name[name], addr), daemon=True
                    )
                    t.start()
                    threads.append(t)
        for t in threads:
            t.join(timeout=30)
        time.sleep(0.5)


def _dialable(addrs: list[str], peer: str) -> list[str]:
    """The lab-reachable addresses of a peer: public ones, else its relayed ones."""
    public = [a for a in addrs if f"/{netlab.PUBLIC_NET}." in a and "p2p-circuit" not in a]
    picked = public or [a for a in addrs if "p2p-circuit" in a]
    return [a if "/p2p/" in a else f"{a}/p2p/{peer}" for a in picked[:1]]


def _try_connect(peer: SwarmPeer, addr: str) -> None:
    try:
        peer.runner.call("connect", addr=addr, timeout=20)
    except Exception:
        pass  # the next round asks again


if __name__ == "__main__":
    main()
