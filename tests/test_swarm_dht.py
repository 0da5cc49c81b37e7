"""DHT records and direct messages in the swarm lab (tests/swarmlab_ops.py): 10 members (3
behind NAT routers) and 2 bootstrap peers, each a process in a namespace of its own, all in
one topic, found through DHT rendezvous.

- ``find_peer`` of a peer we are not connected to (hung up on first) walks the DHT and
  finds it, from any public peer;
- ``find_providers`` for the topic returns every public member, from any public peer;
- provider records are re-advertised before they expire, and those of a peer that was
  SIGKILLed expire: the lab sets a 20 s lifetime and a 4 s re-advertising pause (the real
  ones are go's 48 h and 22 h);
- direct messages between random pairs, NATed ones among them, each delivered or reported
  failed, none lost (acknowledged but not received), none received twice; between public
  peers, nearly all delivered.

Needs root and ``ip`` / ``iptables`` (skipped with the reason otherwise). Bounds are generous:
outcomes are asserted, not speed (bench_swarm_files.py prints the lookup times).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests import netlab
from tests.swarmlab import TOPIC
from tests.swarmlab_ops import OpsSwarm

pytestmark = pytest.mark.skipif(bool(netlab.unavailable()), reason=netlab.unavailable() or "ok")

MEMBERS, BEHIND_NAT = 10, 3
TTL, REPROVIDE = 20.0, 4.0
PROTOCOL = "/swarm-lab/dm/1.0.0"


@pytest.fixture(scope="module")
def swarm() -> Iterator[OpsSwarm]:
    with netlab.Lab(prefix=f"pdsd{random.randrange(16**4):04x}") as lab:
        swarm = OpsSwarm(lab)
        swarm.add(MEMBERS, behind_nat=BEHIND_NAT)
        everyone = swarm.bootstrap + swarm.members
        swarm.each(lambda p: p.runner.call("record_times", ttl=TTL, reprovide=REPROVIDE), everyone)
        swarm.each(lambda p: p.runner.call("subscribe", topic=TOPIC, timeout=60))
        _settle(swarm)
        yield swarm


def _settle(swarm: OpsSwarm, timeout: float = 60) -> None:
    """Wait (bounded) until rendezvous has connected every member to every other: before,
    the swarm is busy dialling and punching holes, and lookups compete with that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        infos = swarm.each(lambda p: p.runner.call("info"))
        if all(len(i["connections"]) >= len(swarm.live) - 1 for i in infos):
            return
        time.sleep(1)


def _providers(swarm: OpsSwarm, askers: list, timeout: float = 30) -> list[set[str]]:
    answers = swarm.each(
        lambda p: p.runner.call("providers", topic=TOPIC, within=timeout, timeout=timeout + 10),
        askers,
    )
    return [set(a["peers"]) for a in answers]


def test_find_peer_walks_to_a_peer_we_are_not_connected_to_from_any_public_peer(
    swarm: OpsSwarm,
) -> None:
    """Askers are the public peers (DHT servers); targets any member, NATed ones too. A
    NATed asker's walk can stall (README "## Swarm": its asks time out), so it is not
    asserted here."""
    peers = swarm.live
    askers = [p for p in peers if not p.behind_nat] + swarm.bootstrap
    pairs = [(asker, random.choice([p for p in peers if p is not asker])) for asker in askers]
    targets = {asker.name: target for asker, target in pairs}
    answers = swarm.each(
        lambda asker: asker.runner.call(
            "find_peer_unconnected",
            peer=targets[asker.name].id,
            timeout=20,
        ),
        [a for a, _ in pairs],
    )
    for (asker, target), got in zip(pairs, answers, strict=True):
        assert not got["connected_at_lookup"], (asker.name, target.name, got)
        assert got["found"], f"{asker.name} did not find {target.name}: {got}"
        # The addresses found are the target's own (its LAN address, or a relayed one).
        own = {a.split("/p2p/")[0] for a in target.runner.call("info")["addrs"]}
        assert own & {a.split("/p2p/")[0] for a in got["addrs"]} or any(
            "p2p-circuit" in a for a in got["addrs"]
        ), (target.name, got["addrs"], own)


def test_find_providers_returns_every_public_member_from_any_public_peer(swarm: OpsSwarm) -> None:
    # The public members, as every public peer sees them (a NATed member can fall out of the
    # DHT on a loaded box: README "## Swarm").
    ids = {p.id for p in swarm.live if not p.behind_nat}
    askers = [p for p in swarm.live if not p.behind_nat] + swarm.bootstrap
    deadline = time.monotonic() + 60
    while True:
        found = _providers(swarm, askers)
        missing = [len(ids - {a.id} - f) for a, f in zip(askers, found, strict=True)]
        if not any(missing) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not any(missing), f"members missing from each asker's answer: {missing}"


def test_records_are_refreshed_and_a_killed_peers_expire(swarm: OpsSwarm) -> None:
    public = [p for p in swarm.live if not p.behind_nat]
    victim = public[-1]
    askers = [p for p in public if p is not victim][:4] + swarm.bootstrap[:1]
    assert all(victim.id in f for f in _providers(swarm, askers))
    swarm.kill(victim)
    killed_at = time.monotonic()
    # Its records outlive it (they are not tied to its connections) ...
    assert any(victim.id in f for f in _providers(swarm, askers))
    # ... until they expire, within the lifetime (and a lookup's duration) of its last one.
    deadline = killed_at + TTL + REPROVIDE + 30
    while (still := [f for f in _providers(swarm, askers) if victim.id in f]) and (
        time.monotonic() < deadline
    ):
        time.sleep(1)
    assert not still, f"a killed peer's record did not expire within {TTL:.0f} s"
    # The others' records are long past their first lifetime: they were re-advertised.
    ids = {p.id for p in swarm.live if not p.behind_nat}
    found = _providers(swarm, askers)
    missing = [len(ids - {a.id} - f) for a, f in zip(askers, found, strict=True)]
    assert not any(missing), f"live members' records not refreshed: {missing}"


def test_direct_messages_between_random_pairs_are_delivered_or_reported_once(
    swarm: OpsSwarm,
) -> None:
    peers = swarm.live
    swarm.each(lambda p: p.runner.call("start", protocol=PROTOCOL))
    nated = [p for p in peers if p.behind_nat]
    pairs = [(a, random.choice([p for p in peers if p is not a])) for a in peers]
    pairs += [(nated[0], nated[1]), (nated[1], nated[0])]  # NAT to NAT, at least once
    per_pair = 20

    def send(i: int) -> list[bool]:
        sender, receiver = pairs[i]
        data = [{"pair": i, "n": n} for n in range(per_pair)]
        return sender.runner.call(
            "send_batch", peer=receiver.id, protocol=PROTOCOL, data=data, timeout=120
        )

    outcomes = swarm.each(lambda i: send(i), list(range(len(pairs))))  # type: ignore[arg-type,return-value]
    time.sleep(1)  # a message acknowledged is out of the receiver already; events are read
    received: Counter[tuple[int, int]] = Counter()
    for peer in peers:
        with peer.runner._events_changed:
            for e in peer.runner.events:
                if e["event"] == "PeerData" and e["protocol"] == PROTOCOL:
                    received[(e["data"]["pair"], e["data"]["n"])] += 1
                    sender = pairs[e["data"]["pair"]][0]
                    assert e["peer"] == sender.id and peer is pairs[e["data"]["pair"]][1]
    twice = {k: c for k, c in received.items() if c > 1}
    assert not twice, f"messages received more than once: {twice}"
    lost = [
        (i, n)
        for i, o in enumerate(outcomes)
        for n, ok in enumerate(o)
        if ok and not received[(i, n)]
    ]
    assert not lost, f"acknowledged but never received: {lost}"
    # Every message was answered for (delivered or failed); between public peers nearly all
    # arrive (on a box at load 30 a few exhaust their 3 attempts; reported, not lost).
    assert all(len(o) == per_pair for o in outcomes)
    public = [
        ok
        for i, o in enumerate(outcomes)
        if not (pairs[i][0].behind_nat or pairs[i][1].behind_nat)
        for ok in o
    ]
    assert sum(public) >= 0.9 * len(public), f"{len(public) - sum(public)} public ones failed"
