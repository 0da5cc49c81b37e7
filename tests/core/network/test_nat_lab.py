"""Peers behind NAT routers reach each other: relay reservations, circuit dials, DCUtR, the DHT.

The lab (tests/netlab.py): a public relay + DHT bootstrap on 198.18.0.0/24, peers A and B each
behind its own MASQUERADE router that drops unsolicited packets. Skips without root.
"""

from __future__ import annotations

import json
import select
import shutil
import time
from collections.abc import Iterator

import pytest

from tests import netlab

pytestmark = pytest.mark.skipif(bool(netlab.unavailable()), reason=netlab.unavailable() or "ok")

CHAT = "/lab-chat/1.0.0"


def _relayed(info: dict, peer: str) -> bool:
    return any(
        c["peer"] == peer and any(link["kind"] == "relayed" for link in c["links"])
        for c in info["connections"]
    )


def _direct(info: dict, peer: str) -> bool:
    return any(
        c["peer"] == peer and any(link["kind"] != "relayed" for link in c["links"])
        for c in info["connections"]
    )


class World:
    def __init__(self, lab: netlab.Lab) -> None:
        self.lab = lab
        self.relay = lab.public("relay").peer("--relay-service")
        relay_addr = next(a for a in self.relay.ready["addrs"] if "198.18." in a)
        self.relay_addr = relay_addr
        # A second public peer: AutoNAT needs two servers to agree.
        self.pub = lab.public("pub").peer("--bootstrap", relay_addr)
        pub_addr = next(a for a in self.pub.ready["addrs"] if "198.18." in a)
        self.a_node = lab.behind_nat("a")
        self.b_node = lab.behind_nat("b")
        self.a = self.a_node.peer("--bootstrap", relay_addr, "--bootstrap", pub_addr)
        a_ready = time.monotonic()
        self.a_info = self.a.wait_info(lambda i: i["relay_addrs"], timeout=10)
        self.a_reserved_after = time.monotonic() - a_ready
        self.b = self.b_node.peer("--bootstrap", relay_addr, "--bootstrap", pub_addr)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with netlab.Lab() as lab:
        yield World(lab)


def test_the_lab_nat_drops_unsolicited_dials(world: World) -> None:
    """Control: without a relay nobody reaches A's own (private or router) address."""
    a_direct = [x for x in world.a.ready["addrs"] if "p2p-circuit" not in x and "/127." not in x]
    assert a_direct and not any("0.0.0.0" in x for x in a_direct)
    router = a_direct[0].replace(world.a_node.ip, world.a_node.router_ip)
    # A public peer that knows nothing else of A (no DHT, so no circuit address to fall to).
    stranger = world.lab.public("stranger").peer()
    with pytest.raises(RuntimeError):
        stranger.call("connect", addr=router, timeout=30)


def test_reservation_within_2_s(world: World) -> None:
    info, took = world.a_info, world.a_reserved_after
    assert any(world.relay.peer_id in a for a in info["relay_addrs"])
    assert any("p2p-circuit" in a for a in info["addrs"]), "circuit address not advertised"
    assert took < 2.0, f"reservation after {took:.2f} s"


def test_relayed_connection_by_circuit_address(world: World) -> None:
    b_info = world.b.wait_info(lambda i: i["relay_addrs"], timeout=10)
    circuit = f"{b_info['relay_addrs'][0]}/p2p/{world.b.peer_id}"
    world.a.call("connect", addr=circuit, timeout=15)
    info = world.a.wait_info(lambda i: any(c["peer"] == world.b.peer_id for c in i["connections"]))
    assert _relayed(info, world.b.peer_id) or _direct(info, world.b.peer_id)


def test_dcutr_makes_it_direct_within_5_s_and_100_messages_arrive(world: World) -> None:
    world.a.wait_info(lambda i: _relayed(i, world.b.peer_id) or _direct(i, world.b.peer_id))
    start = time.monotonic()
    world.a.wait_info(lambda i: _direct(i, world.b.peer_id), timeout=15)
    took = time.monotonic() - start
    assert took < 5.0, f"direct connection after {took:.2f} s"
    world.b.call("start", protocol=CHAT)
    delivered = world.a.call(
        "send_many", peer=world.b.peer_id, protocol=CHAT, data=list(range(100)), timeout=60
    )
    assert delivered == [True] * 100
    got = [e["data"] for e in world.b.events if e["event"] == "PeerData"]
    assert sorted(got) == list(range(100))


def test_autonat_private_behind_the_nat_public_on_the_public_net(world: World) -> None:
    """Behind the NAT the servers' dial-backs to A's router address fail: private, although
    A claims that (router) address. The public peer is dialled back: public."""
    info = world.a.wait_info(lambda i: i["reachability"] != "unknown", timeout=40)
    assert info["reachability"] == "private"
    assert (
        world.pub.wait_info(lambda i: i["reachability"] != "unknown", timeout=40)["reachability"]
        == "public"
    )


def test_a_direct_message_to_a_peer_known_only_by_id_arrives(world: World) -> None:
    """C (behind a NAT of its own) is told nothing but B's peer id: the DHT gives it B's
    circuit address and the message goes through."""
    c = world.lab.behind_nat("c").peer("--bootstrap", world.relay_addr)
    world.b.call("start", protocol=CHAT)
    c.call("send", peer=world.b.peer_id, protocol=CHAT, data={"from": "c"}, timeout=60)
    world.b.wait_event(lambda e: e["event"] == "PeerData" and e["data"] == {"from": "c"})


def test_topic_messages_flow_both_ways(world: World) -> None:
    topic = "lab-topic"
    world.a.call("subscribe", topic=topic)
    world.b.call("subscribe", topic=topic)
    for sender, receiver, text in ((world.a, world.b, "from a"), (world.b, world.a, "from b")):
        deadline = time.monotonic() + 30
        while True:
            sender.call("publish", topic=topic, data=text)
            try:
                receiver.wait_event(
                    lambda e, t=text: e["event"] == "TopicData" and e["data"] == t, timeout=1
                )
                break
            except TimeoutError:
                assert time.monotonic() < deadline, f"topic message {text!r} never arrived"


def test_behind_a_port_randomizing_nat_it_stays_relayed_and_works(world: World) -> None:
    """``--random-fully`` defeats hole punching: the connection stays relayed, messages arrive."""
    d = world.lab.behind_nat("d", random=True).peer("--relay", world.relay_addr)
    d_info = d.wait_info(lambda i: i["relay_addrs"], timeout=10)
    d.call("start", protocol=CHAT)
    world.a.call("connect", addr=f"{d_info['relay_addrs'][0]}/p2p/{d.peer_id}", timeout=15)
    delivered = world.a.call(
        "send_many", peer=d.peer_id, protocol=CHAT, data=list(range(20)), timeout=60
    )
    assert delivered == [True] * 20
    time.sleep(3)  # a hole punch, had it worked, is done by now (~0.5-3 s in this lab)
    info = world.a.call("info")
    assert _relayed(info, d.peer_id) and not _direct(info, d.peer_id)


JS_RELAY = netlab.ROOT / "tests" / "interop" / "nat_relay.mjs"
JS_MODULE = netlab.ROOT / "tests" / "interop" / "node_modules" / "@libp2p" / "circuit-relay-v2"


needs_js = pytest.mark.skipif(
    shutil.which("node") is None or not JS_MODULE.exists(),
    reason="needs node and tests/interop's node_modules (npm ci in tests/interop)",
)


def _js_relay(lab: netlab.Lab, name: str, *limit: str) -> str:
    """Start tests/interop/nat_relay.mjs on the public net; returns its multiaddr."""
    node = lab.public(name)
    proc = node.spawn("node", str(JS_RELAY), node.ip, "4001", *limit)
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], 30)
    assert readable, "the js relay did not start within 30 s"
    ready = json.loads(proc.stdout.readline() or "{}")
    return f"/ip4/{node.ip}/tcp/4001/p2p/{ready['peerid']}"


@needs_js
def test_through_a_js_libp2p_relay(world: World) -> None:
    """js-libp2p's circuit relay v2 server as the public relay: two py peers behind NATs
    reserve on it and a direct message goes through it."""
    js_addr = _js_relay(world.lab, "jsrelay")
    e = world.lab.behind_nat("e").peer("--relay", js_addr)
    f = world.lab.behind_nat("f").peer("--relay", js_addr)
    f_info = f.wait_info(lambda i: i["relay_addrs"], timeout=15)
    e.wait_info(lambda i: i["relay_addrs"], timeout=15)
    assert js_addr.split("/p2p/")[1] in f_info["relay_addrs"][0]
    f.call("start", protocol=CHAT)
    e.call("connect", addr=f"{f_info['relay_addrs'][0]}/p2p/{f.peer_id}", timeout=20)
    e.call("send", peer=f.peer_id, protocol=CHAT, data={"via": "js"}, timeout=30)
    f.wait_event(lambda ev: ev["event"] == "PeerData" and ev["data"] == {"via": "js"})


@needs_js
def test_direct_messages_survive_the_relay_cutting_a_limited_connection(world: World) -> None:
    """go and js relays cut a relayed connection after 128 KiB (here 32 KiB, of which a new
    connection's identify, pubsub and DHT greetings take a few). Both peers behind
    port-randomizing NATs, so it stays relayed: ~45 KB of messages in batches, as a chat
    sends them, all arrive over the next relayed connection after each cut."""
    js_addr = _js_relay(world.lab, "jslimit", "32768")
    g = world.lab.behind_nat("g", random=True).peer("--relay", js_addr)
    h = world.lab.behind_nat("h", random=True).peer("--relay", js_addr)
    h_info = h.wait_info(lambda i: i["relay_addrs"], timeout=15)
    g.wait_info(lambda i: i["relay_addrs"], timeout=15)
    h.call("start", protocol=CHAT)
    g.call("connect", addr=f"{h_info['relay_addrs'][0]}/p2p/{h.peer_id}", timeout=20)
    for batch in range(10):
        messages = [{"n": batch * 10 + n, "pad": "x" * 400} for n in range(10)]
        delivered = g.call("send_many", peer=h.peer_id, protocol=CHAT, data=messages, timeout=60)
        assert delivered == [True] * 10, f"batch {batch}"
    got = sorted({e["data"]["n"] for e in h.events if e["event"] == "PeerData"})
    assert got == list(range(100))
