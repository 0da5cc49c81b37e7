"""A reduced swarm in the namespace lab (tests/swarmlab.py): 10 members and 2 bootstrap peers,
each a process in a namespace of its own, knowing only the bootstrap peers, join one topic
through DHT rendezvous; messages, churn (SIGKILL and a clean exit, new peers joining), DHT
lookups, mesh bounds and leaks. The 50-peer run is benchmarks/bench_swarm.py.

Needs root and ``ip`` / ``iptables`` (skipped with the reason otherwise). Bounds are generous:
outcomes are asserted, not speed.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest

from tests import netlab, swarmlab
from tests.swarmlab import D_HI, D_LO, TOPIC, Swarm, SwarmPeer

pytestmark = pytest.mark.skipif(bool(netlab.unavailable()), reason=netlab.unavailable() or "ok")

MEMBERS = 10


@pytest.fixture(scope="module")
def swarm() -> Iterator[Swarm]:
    with netlab.Lab(prefix=f"pdsw{random.randrange(16**4):04x}") as lab:
        swarm = Swarm(lab)
        swarm.add(MEMBERS)
        swarm.each(lambda p: p.runner.call("subscribe", topic=TOPIC, timeout=60))
        yield swarm


def _publish_round(swarm: Swarm, peers: list[SwarmPeer], seq: int) -> None:
    swarm.each(
        lambda p: p.runner.call("publish", topic=TOPIC, data=swarmlab.message(p, seq), timeout=30),
        peers,
    )


def _missing(swarm: Swarm, senders: list[SwarmPeer], seqs: list[int], timeout: float) -> dict:
    """What each live peer has not received of ``senders``' messages ``seqs``, after waiting."""
    deadline = time.monotonic() + timeout
    while True:
        missing = {}
        for receiver in swarm.live:
            want = {(s.id, q) for s in senders if s is not receiver for q in seqs}
            lost = want - swarmlab.delivered(receiver)
            if lost:
                missing[receiver.name] = len(lost)
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.25)


def _diagnosis(swarm: Swarm, wrong: dict[str, list[str]]) -> dict[str, list[str]]:
    """For each entry a member's topic list lacks (or has too many of): is that peer
    connected, does it have our pubsub stream, do we have its, has it announced the topic.
    Tells a membership failure of pubsub (core/libp2p_compat/pubsub_sync.py) from one of
    rendezvous."""
    by_name = {p.name: p for p in swarm.live}
    out = {}
    for name, ids in wrong.items():
        view = by_name[name].runner.call("pubsub_view", topic=TOPIC)
        out[name] = [
            f"{peer[-6:]}: connected={view['connected'].get(peer)} "
            f"stream={peer in view['streams']} its stream={peer in view['readers']} "
            f"subscribed={peer in view['subscribed']}"
            for peer in ids
        ]
    return out


def test_members_converge_through_rendezvous(swarm: Swarm) -> None:
    ids = {p.id for p in swarm.live}

    def unconnected() -> dict[str, int]:
        infos = swarm.each(lambda p: p.runner.call("info"))
        return {
            p.name: len(ids - {p.id} - {c["peer"] for c in info["connections"]})
            for p, info in zip(swarm.live, infos, strict=True)
            if ids - {p.id} - {c["peer"] for c in info["connections"]}
        }

    deadline = time.monotonic() + 60
    while (missing := unconnected()) and time.monotonic() < deadline:
        time.sleep(1)
    assert not missing, f"members not connected to every other member: {missing}"
    wrong = swarm.wait_members(30)
    assert not wrong, f"member lists never converged: {_diagnosis(swarm, wrong)}"


def test_every_message_reaches_every_member(swarm: Swarm) -> None:
    for seq in range(3):
        _publish_round(swarm, swarm.live, seq)
    missing = _missing(swarm, swarm.live, [0, 1, 2], timeout=30)
    assert not missing, f"messages lost: {missing}"


def test_mesh_sizes_within_bounds(swarm: Swarm) -> None:
    # The mesh settles within a few heartbeats (0.5 s) of the members' arrival.
    deadline = time.monotonic() + 20
    while True:
        sizes = swarm.each(lambda p: len(p.runner.call("mesh").get(TOPIC, [])))
        if all(D_LO <= s <= D_HI for s in sizes) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert all(D_LO <= s <= D_HI for s in sizes), f"mesh sizes {sizes}"


def test_find_peer_and_providers_from_any_peer(swarm: Swarm) -> None:
    peers = swarm.live
    for asker in random.sample(peers, 4):
        target = random.choice([p for p in peers if p is not asker])
        found = asker.runner.call("find_peer", peer=target.id, timeout=30)
        assert found["found"], f"{asker.name} could not find {target.name}"
    # Members advertise as they join, so right after the lists converged the records at the
    # topic's closest servers may still be arriving (2 of 10 in 0.4 s, seen once the lists
    # converged within seconds): ask again until three are there, within a bound.
    deadline = time.monotonic() + 30
    while True:
        providers = peers[0].runner.call("find_providers", topic=TOPIC, timeout=30)
        if len(set(providers["peers"]) & {p.id for p in peers}) >= 3:
            break
        assert time.monotonic() < deadline, providers
        time.sleep(1.0)


def test_churn_reports_joins_and_leaves_and_loses_no_live_message(swarm: Swarm) -> None:
    before = swarm.each(lambda p: p.runner.call("stats"))
    killed, leaving = swarm.live[0:2], swarm.live[2]
    survivors = [p for p in swarm.live if p not in killed and p is not leaving]
    # Steady traffic from the survivors while peers go and come.
    stop = threading.Event()
    sent: list[int] = []

    def traffic() -> None:
        seq = 100
        while not stop.is_set():
            _publish_round(swarm, survivors, seq)
            sent.append(seq)
            seq += 1
            time.sleep(0.5)

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        for peer in killed:
            swarm.kill(peer)
        swarm.exit(leaving)
        newcomers = swarm.add(3)
        swarm.each(lambda p: p.runner.call("subscribe", topic=TOPIC, timeout=60), newcomers)
        time.sleep(3)
    finally:
        stop.set()
        sender.join(timeout=60)
    gone = {p.id for p in [*killed, leaving]}
    missing = _missing(swarm, survivors, sent, timeout=30)
    missing = {n: c for n, c in missing.items() if n not in {p.name for p in newcomers}}
    assert sent and not missing, f"live peers' messages lost during churn: {missing}"

    # Every survivor reports a leave for each departed peer it had seen join (killed peers
    # once their connections end), lists none of them, and reports the newcomers' joins.
    deadline = time.monotonic() + 60
    while True:
        unreported: dict[str, list[str]] = {}
        for s in survivors:
            changes = s.changes()
            seen = {p for p, joined in changes if joined}
            left = {p for p, joined in changes if not joined}
            lacking = (seen & gone) - left
            if lacking:
                unreported[s.name] = sorted(lacking)
        if not unreported or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not unreported, f"leaves not reported: {_diagnosis(swarm, unreported)}"
    lists = swarm.each(lambda p: p.runner.call("topic_peers", topic=TOPIC), survivors)
    assert not any(set(x) & gone for x in lists), "a departed peer is still listed"
    new_ids = {n.id for n in newcomers}
    not_joined = {
        s.name: sorted(new_ids - {p for p, j in s.changes() if j})
        for s in survivors
        if new_ids - {p for p, j in s.changes() if j}
    }
    assert not not_joined, f"joins not reported: {_diagnosis(swarm, not_joined)}"

    # New peers' messages reach everyone, old ones' reach the new.
    _publish_round(swarm, swarm.live, 500)
    assert not _missing(swarm, swarm.live, [500], timeout=30)

    # No connection to a departed peer is kept, and nothing grew with the churn: as many
    # peers left as came, so tasks and connections return to their former level.
    # A SIGKILLed peer sends no goodbye: a connection the kernel did not end (QUIC's has no
    # FIN) lasts until its idle timeout, so this waits a bounded while.
    deadline = time.monotonic() + 60
    while True:
        infos = swarm.each(lambda p: p.runner.call("info"), survivors)
        held = {
            peer.name: [c for c in info["connections"] if c["peer"] in gone]
            for peer, info in zip(survivors, infos, strict=True)
            if any(c["peer"] in gone for c in info["connections"])
        }
        if not held or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not held, f"connections to departed peers kept: {held}"
    # Counted once the churn's own work is done: messages in flight, repairs still waiting
    # out a departed peer's connection (pubsub_sync), newcomers' set-up all end on their own.
    # A peer may have more peers than before (not everyone was connected to everyone yet), so
    # what must not grow is the connections beyond one per peer, and the tasks per connection.
    by_name_before = dict(zip([p.name for p in swarm.members[:MEMBERS]], before, strict=True))

    def leaked(old: dict, new: dict) -> bool:
        extra = max(old["connections"] - old["peers"], 0)
        per_conn = old["tasks"] / max(old["connections"], 1)
        return (
            new["connections"] - new["peers"] > extra + 3
            or new["tasks"] > per_conn * new["connections"] * 1.3 + 30
        )

    def grown() -> list[tuple[str, dict, dict]]:
        after = swarm.each(lambda p: p.runner.call("stats"), survivors)
        return [
            (peer.name, by_name_before[peer.name], stats)
            for peer, stats in zip(survivors, after, strict=True)
            if leaked(by_name_before[peer.name], stats)
        ]

    deadline = time.monotonic() + 45
    while (leaks := grown()) and time.monotonic() < deadline:
        time.sleep(2)
    assert not leaks, (
        f"connections or trio tasks grew with the churn (name, before, after): {leaks}"
    )
