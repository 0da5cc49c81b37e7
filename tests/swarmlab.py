"""A swarm in the network-namespace lab (tests/netlab.py): many peers, one topic, churn.

Every peer is a separate process in a namespace of its own on the lab's public net (or behind
a home router of its own), knowing only the two bootstrap peers. The processes are
``tests/nat_runner.py`` with a few more requests (``python -m tests.swarmlab`` adds them):
GossipSub mesh sizes, DHT lookups, unsubscribe, and the process's own figures (trio tasks,
connections, CPU seconds, RSS) to check for leaks after churn. Each ``TopicData`` event is
stamped with the wall time it came out, so delivery latency is measured against the send time
carried in the message (all processes share one clock).

Used by tests/test_swarm.py (the reduced swarm CI runs) and benchmarks/bench_swarm.py (50 peers).
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from tests import nat_runner, netlab

TOPIC = "swarm-lab"
D_LO, D_HI = 5, 12
"""The mesh bounds core/network/topics.py configures (p2p-webapp's)."""


# -- inside a peer process ----------------------------------------------------------------------


def _task_count() -> int:
    """Every live trio task of this process: a leak of per-connection tasks shows here."""
    count = 0
    todo = [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        count += 1
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return count


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _conn_label(conn: Any) -> str:
    """A connection's remote address and whether its muxer still runs (a closed one that is
    still registered is a zombie)."""
    try:
        addr = str(conn.get_transport_addresses()[0])
    except Exception:
        addr = "?"
    return f"{addr}{' (closed)' if getattr(conn.muxed_conn, 'is_closed', False) else ''}"


async def _swarm_handle(peer: Any, req: dict[str, Any]) -> Any:
    op = req["op"]
    if op == "mesh":
        return {t: sorted(str(p) for p in ps) for t, ps in peer.router.mesh.items()}
    if op == "pubsub_view":
        # Why a member may be missing from a topic list: no pubsub stream, or no subscription.
        network = peer.host.get_network()
        pubsub = peer.pubsub
        readers = {  # peers with a pubsub stream to us (other than our own writer)
            str(p)
            for p, cs in network.get_connections_map().items()
            for c in cs
            for st in c.get_streams()
            if st.get_protocol() in pubsub.protocols and st is not pubsub.peers.get(p)
        }
        conn_of = {  # each connection by its muxer, to name the one a writer is on
            id(c.muxed_conn): c for cs in network.get_connections_map().values() for c in cs
        }
        writers = {}
        for p, st in list(pubsub.peers.items()):
            conn = conn_of.get(id(st.muxed_conn))
            queue = pubsub.peer_queues.get(p)
            writers[str(p)] = {
                "conn": _conn_label(conn) if conn is not None else "a connection gone",
                "queued": len(queue) if queue is not None else -1,
            }
        return {
            "writers": writers,
            "streams": sorted(str(p) for p in pubsub.peers),
            "readers": sorted(readers),
            "subscribed": sorted(str(p) for p in peer.pubsub.peer_topics.get(req["topic"], ())),
            "connected": {
                str(p): [_conn_label(c) for c in cs]
                for p, cs in network.get_connections_map().items()
                if cs
            },
        }
    if op == "unsubscribe":
        return await peer.unsubscribe(req["topic"])
    if op == "find_peer":
        from libp2p.peer.id import ID

        start = time.monotonic()
        with trio.move_on_after(req.get("bound", 10.0)):  # seconds the lookup may take
            target = ID.from_base58(req["peer"])
            if req.get("walk"):  # through the DHT even when connected (Dht.find_peer is not)
                from core import libp2p_compat

                info = await libp2p_compat.find_peer_network(peer.dht.kad, target)
            else:
                info = await peer.dht.find_peer(target)
            return {"found": info is not None, "took": time.monotonic() - start}
        return {"found": False, "took": time.monotonic() - start}
    if op == "protocols_of":  # what identify told us a peer speaks
        from libp2p.peer.id import ID

        try:
            return sorted(peer.host.get_peerstore().get_protocols(ID.from_base58(req["peer"])))
        except Exception as exc:
            return [f"error: {exc}"]
    if op == "find_providers":
        start = time.monotonic()
        # Seconds the lookup may take: past the walk's own 10 s, which ends it with what it
        # found (a bound of 10 cut it at the same moment, and answered nothing).
        seen: dict[str, float] = {}  # each provider and when the walk named it

        def named(info: Any) -> None:
            seen.setdefault(str(info.peer_id), time.monotonic() - start)

        with trio.move_on_after(req.get("bound", 15.0)):
            found = await peer.dht.find_topic_peers(req["topic"], on_found=named)
            ids = sorted(str(i.peer_id) for i in found)
            return {"peers": ids, "took": time.monotonic() - start, "named": seen}
        return {"peers": [], "took": time.monotonic() - start, "named": seen}
    if op == "held_providers":  # the provider records this peer stores for a topic's keys
        from core.network import dht

        store = peer.dht.providers
        return {
            ns: sorted(str(i.peer_id) for i in store.held(dht.namespace_cid(ns)))
            for ns in dht.rendezvous_namespaces(req["topic"])
        }
    if op == "stats":
        usage = resource.getrusage(resource.RUSAGE_SELF)
        network = peer.host.get_network()
        return {
            "tasks": _task_count(),
            "connections": sum(len(c) for c in network.get_connections_map().values()),
            "peers": len([p for p, c in network.get_connections_map().items() if c]),
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "rss_mib": _rss_mib(),
            "dht_mode": peer.dht.kad.mode.name,
            "routing_table": peer.dht.routing_table_size(),
        }
    return await _plain_handle(peer, req)


_plain_handle = nat_runner._handle
_plain_emit = nat_runner._emit


def _stamped_emit(event: Any) -> None:
    """Topic messages carry the time they came out of the peer, for delivery latency."""
    if type(event).__name__ == "TopicData":
        nat_runner._write(
            {"event": "TopicData", "topic": event.topic, "peer": event.peer, "data": event.data,
             "at": time.time()}
        )  # fmt: skip
    else:
        _plain_emit(event)


# -- the lab side -------------------------------------------------------------------------------


@dataclass
class SwarmPeer:
    """One peer process and what the test has seen of it."""

    name: str
    node: netlab.Node
    runner: netlab.RunnerPeer
    behind_nat: bool = False

    @property
    def id(self) -> str:
        return self.runner.peer_id

    @property
    def alive(self) -> bool:
        return self.runner.proc.poll() is None

    def received(self, topic: str = TOPIC) -> list[dict[str, Any]]:
        with self.runner._events_changed:
            return [
                e for e in self.runner.events if e["event"] == "TopicData" and e["topic"] == topic
            ]

    def changes(self, topic: str = TOPIC) -> list[tuple[str, bool]]:
        with self.runner._events_changed:
            return [
                (e["peer"], e["joined"])
                for e in self.runner.events
                if e["event"] == "PeerChange" and e["topic"] == topic
            ]


@dataclass
class Swarm:
    """Two public bootstrap peers (the first also a relay) and any number of members."""

    runner_module = "tests.swarmlab"
    """The module each peer process runs (a subclass's lab adds its own commands)."""

    lab: netlab.Lab
    bootstrap: list[SwarmPeer] = field(default_factory=list)
    members: list[SwarmPeer] = field(default_factory=list)
    gone: list[SwarmPeer] = field(default_factory=list)
    failed_starts: list[str] = field(default_factory=list)
    ready_base: float = netlab.RunnerPeer.READY_TIMEOUT
    """Seconds a process may take to come up on an idle box, plus, because every process
    shares the same cores (2 on the build box):"""
    ready_per_peer: float = 1.0
    """... this much for each peer already running (their heartbeats, DHT and traffic), and"""
    ready_per_start: float = 3.0
    """... this much for each process starting at the same time (~1 s of CPU each)."""
    _n: int = 0
    _starting: int = 1

    def __post_init__(self) -> None:
        first = self._start("boot0", public=True, args=["--relay-service"])
        addr = public_addr(first)
        second = self._start("boot1", public=True, args=["--bootstrap", addr])
        self.bootstrap = [first, second]
        self.bootstrap_addrs = [addr, public_addr(second)]

    def _start(self, name: str, *, public: bool, args: list[str]) -> SwarmPeer:
        node = self.lab.public(name) if public else self.lab.behind_nat(name)
        return self._spawn(name, node, public, args)

    def ready_timeout(self) -> float:
        """The ready deadline of a process starting now: grows with the load it starts in."""
        running = len(self.bootstrap) + len(self.live)
        return (
            self.ready_base + self.ready_per_peer * running + self.ready_per_start * self._starting
        )

    def add(self, count: int, *, behind_nat: int = 0, strict: bool = True) -> list[SwarmPeer]:
        """Start ``count`` members (the last ``behind_nat`` of them behind routers), in
        parallel: each start is a Python process importing py-libp2p, ~1 s of CPU. A start
        that fails raises, unless ``strict`` is off: then its name goes to ``failed_starts``
        and the others are kept (a benchmark reports it and goes on)."""
        names = []
        for i in range(count):
            self._n += 1
            names.append((f"m{self._n}", i < count - behind_nat))
        args = [a for addr in self.bootstrap_addrs for a in ("--bootstrap", addr)]
        relay = ["--relay", self.bootstrap_addrs[0]]
        # Namespaces are made one at a time (the lab numbers addresses), processes in parallel.
        nodes = [
            (n, self.lab.public(n) if pub else self.lab.behind_nat(n), pub) for n, pub in names
        ]
        started: list[SwarmPeer] = []
        errors: list[BaseException] = []

        def start(name: str, node: netlab.Node, pub: bool) -> None:
            try:
                started.append(self._spawn(name, node, pub, args + ([] if pub else relay)))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start, args=spec) for spec in nodes]
        self._starting = len(threads)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self._starting = 1
        if errors and strict:
            raise errors[0]
        started_names = {p.name for p in started}
        self.failed_starts += [n for n, _ in names if n not in started_names]
        order = {n: i for i, (n, _) in enumerate(names)}
        started.sort(key=lambda p: order[p.name])
        self.members.extend(started)
        return started

    def _spawn(self, name: str, node: netlab.Node, public: bool, args: list[str]) -> SwarmPeer:
        argv = ["ip", "netns", "exec", node.ns, sys.executable, "-m", self.runner_module, *args]
        proc = subprocess.Popen(
            argv,
            cwd=netlab.ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None if os.environ.get("NETLAB_DEBUG") else subprocess.DEVNULL,
            env={**os.environ, "NETLAB_NAME": name},
            text=True,
            bufsize=1,
        )
        try:
            runner = netlab.RunnerPeer(proc, ready_timeout=self.ready_timeout())
        except BaseException:
            proc.kill()
            proc.wait(timeout=5)
            raise
        self.lab.processes.append(runner)
        return SwarmPeer(name, node, runner, behind_nat=not public)

    @property
    def live(self) -> list[SwarmPeer]:
        return [p for p in self.members if p.alive and p not in self.gone]

    def kill(self, peer: SwarmPeer) -> None:
        """SIGKILL: no goodbye, the others see its connections time out or reset. (Gone from
        ``live`` before it goes, so no one calls it on its way out.)"""
        self.gone.append(peer)
        peer.runner.proc.send_signal(signal.SIGKILL)
        peer.runner.proc.wait(timeout=10)

    def exit(self, peer: SwarmPeer) -> None:
        """A clean exit: the peer stops and closes its connections."""
        self.gone.append(peer)
        peer.runner.close()

    def each(self, fn: Callable[[SwarmPeer], Any], peers: list[SwarmPeer] | None = None) -> list:
        """``fn`` on every peer at once (each call blocks on its own process)."""
        peers = self.live if peers is None else peers
        results: list[Any] = [None] * len(peers)
        errors: list[BaseException] = []

        def run(i: int, p: SwarmPeer) -> None:
            try:
                results[i] = fn(p)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i, p)) for i, p in enumerate(peers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results

    def wait_members(self, timeout: float, topic: str = TOPIC) -> dict[str, list[str]]:
        """Poll every live member's topic list until each lists exactly the other live
        members; returns the last lists of those that did not get there (empty on success)."""
        deadline = time.monotonic() + timeout
        while True:
            ids = {p.id for p in self.live}
            lists = self.each(lambda p: p.runner.call("topic_peers", topic=topic, timeout=30))
            wrong = {
                p.name: sorted(set(got) ^ (ids - {p.id}))
                for p, got in zip(self.live, lists, strict=True)
                if set(got) != ids - {p.id}
            }
            if not wrong or time.monotonic() > deadline:
                return wrong
            time.sleep(0.5)


def public_addr(peer: SwarmPeer) -> str:
    return next(a for a in peer.runner.ready["addrs"] if f"/{netlab.PUBLIC_NET}." in a)


def message(sender: SwarmPeer, seq: int) -> dict[str, Any]:
    return {"from": sender.id, "seq": seq, "t": time.time()}


def delivered(receiver: SwarmPeer, topic: str = TOPIC) -> set[tuple[str, int]]:
    return {(e["data"]["from"], e["data"]["seq"]) for e in receiver.received(topic)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _Args(argparse.Namespace):
    """nat_runner's options this lab does not set (new ones appear as that lab grows) are off."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", action="append", default=[])
    parser.add_argument("--relay", action="append", default=[])
    parser.add_argument("--relay-service", action="store_true")
    nat_runner._handle = _swarm_handle  # type: ignore[assignment]
    nat_runner._emit = _stamped_emit  # type: ignore[assignment]
    nat_runner.quiet_library_logging()
    if debug := os.environ.get("NETLAB_DEBUG"):  # logger names, comma-separated, to stderr
        who = os.environ.get("NETLAB_NAME", "?")  # which member wrote a line of the shared stderr
        logging.basicConfig(
            level=logging.WARNING, format=f"%(asctime)s {who} %(name)s %(levelname)s %(message)s"
        )
        for name in debug.split(","):
            logging.getLogger(name).setLevel(logging.DEBUG)
    trio.run(nat_runner.main, _Args(**vars(parser.parse_args())))


if __name__ == "__main__":
    main()
