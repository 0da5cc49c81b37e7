"""NAT traversal figures from the network-namespace lab (tests/netlab.py; needs root).

Prints: time from start to a relay reservation; time to a relayed connection by circuit
address; time from that to a direct connection (DCUtR); direct-message rate over a relayed
connection (B behind a port-randomizing NAT, where hole punching cannot work), over the
hole-punched direct connection, and — the baseline, same lab, same run — between two public
peers with no NAT in between; behind a router running miniupnpd, the time to a UPnP port
mapping and then to AutoNAT's "public". Between public peers, QUIC against TCP: connect time
(Peerdesk, measured around the runner's ``connect`` call, and bare py-libp2p connecting from
fresh hosts in the same lab), direct-message rate and bulk rate (64 KiB messages) over each;
the figures that decided that Peerdesk dials TCP first (core/libp2p_compat/quic.py).

    sudo .venv/bin/python benchmarks/bench_nat.py [--messages 300]
"""

from __future__ import annotations

import argparse
import json
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import netlab

CHAT = "/bench-nat/1.0.0"
BARE = Path(__file__).resolve().parent / "nat_bare_peer.py"


def _line(proc: subprocess.Popen[str], timeout: float = 60) -> dict:
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    if not readable:
        raise TimeoutError("the bare py-libp2p peer said nothing")
    return json.loads(proc.stdout.readline() or "{}")


def _bare_libp2p(lab: netlab.Lab, relay_addr: str) -> tuple[float, float, float | None]:
    """Reservation, relayed connection and DCUtR time with py-libp2p as it comes
    (nat_bare_peer.py)."""
    x_node, y_node = lab.behind_nat("x"), lab.behind_nat("y")
    x = x_node.spawn(sys.executable, str(BARE), x_node.ip, relay_addr)
    y = y_node.spawn(sys.executable, str(BARE), y_node.ip, relay_addr)
    reserved = _line(x)["reserved"]
    y_ready = _line(y)
    assert x.stdin is not None
    x.stdin.write(f"{y_ready['circuit']}/p2p/{y_ready['peerid']}\n")
    x.stdin.flush()
    relayed = _line(x)["relayed"]
    direct = _line(x)["direct"]
    return reserved, relayed, (direct - relayed if direct is not None else None)


def _port_mapping(lab: netlab.Lab, relay_addr: str, pub: netlab.RunnerPeer) -> tuple[float, float]:
    """Behind a router running miniupnpd: time to the mapped address, then to AutoNAT's
    verdict that it is public (the relay and ``pub`` are the two servers)."""
    pub_addr = next(a for a in pub.ready["addrs"] if "198.18." in a)
    with tempfile.TemporaryDirectory(prefix="bench-nat-upnp-") as folder:
        node = netlab.upnp_router(lab, "u", lab.public("stun"), Path(folder))
        router = f"/ip4/{node.router_ip}/tcp/"  # type: ignore[attr-defined]
        peer = node.peer("--bootstrap", relay_addr, "--bootstrap", pub_addr, "--port-mapping")
        start = time.perf_counter()
        peer.wait_info(lambda i: any(router in a for a in i["addrs"]), timeout=30)
        mapped = time.perf_counter() - start
        peer.wait_info(lambda i: i["reachability"] == "public", timeout=60)
        verified = time.perf_counter() - start - mapped
        peer.close()
    return mapped, verified


def _bulk(sender: netlab.RunnerPeer, receiver: netlab.RunnerPeer, count: int = 48) -> float:
    """MiB/s of direct messages of 64 KiB each."""
    receiver.call("start", protocol=CHAT)
    chunk = "x" * 65536
    start = time.perf_counter()
    delivered = sender.call(
        "send_many", peer=receiver.peer_id, protocol=CHAT, data=[chunk] * count, timeout=300
    )
    took = time.perf_counter() - start
    assert all(delivered), "bulk messages were lost"
    return count * len(chunk) / took / 2**20


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _quic_vs_tcp(lab: netlab.Lab, messages: int, rounds: int = 3) -> dict[str, dict[str, float]]:
    """Connect time (median of ``rounds`` fresh dialers), message and bulk rate, per transport,
    to one public peer listening on both; and bare py-libp2p's connect times."""
    server = lab.public("qsrv").peer()
    addrs = {
        "tcp": next(a for a in server.ready["addrs"] if "198.18." in a and "/tcp/" in a),
        "quic": next(a for a in server.ready["addrs"] if "198.18." in a and "/quic-v1" in a),
    }
    out: dict[str, dict[str, float]] = {}
    for kind, addr in addrs.items():
        times: list[float] = []
        dialer: netlab.RunnerPeer | None = None
        for i in range(rounds):
            dialer = lab.public(f"{kind}{i}").peer()
            start = time.perf_counter()
            dialer.call("connect", addr=addr, timeout=30)
            times.append(time.perf_counter() - start)
        assert dialer is not None
        links = next(c for c in dialer.call("info")["connections"] if c["peer"] == server.peer_id)
        used = "quic" if "/quic-v1" in links["links"][0]["addrs"][0] else "tcp"
        assert used == kind, f"dialled {addr} but the connection is {used}"
        out[kind] = {
            "connect": _median(times),
            "rate": _rate(dialer, server, messages),
            "bulk": _bulk(dialer, server),
        }
    bare_node = lab.public("bareq")
    bare = bare_node.spawn(
        sys.executable, str(BARE), "connect", bare_node.ip, str(rounds), *addrs.values()
    )
    bare_times = _line(bare, timeout=120)
    for kind, addr in addrs.items():
        out[kind]["bare_connect"] = _median(bare_times[addr])
    return out


def _has_link(info: dict, peer: str, kinds: set[str]) -> bool:
    return any(
        c["peer"] == peer and any(link["kind"] in kinds for link in c["links"])
        for c in info["connections"]
    )


def _rate(sender: netlab.RunnerPeer, receiver: netlab.RunnerPeer, count: int) -> float:
    receiver.call("start", protocol=CHAT)
    sender.call("send_many", peer=receiver.peer_id, protocol=CHAT, data=[0] * 10, timeout=60)
    start = time.perf_counter()
    delivered = sender.call(
        "send_many", peer=receiver.peer_id, protocol=CHAT, data=list(range(count)), timeout=300
    )
    took = time.perf_counter() - start
    assert all(delivered), "messages were lost"
    return count / took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()
    reason = netlab.unavailable()
    if reason:
        sys.exit(f"bench_nat: {reason}")
    with netlab.Lab() as lab:
        relay = lab.public("relay").peer("--relay-service")
        relay_addr = next(a for a in relay.ready["addrs"] if "198.18." in a)
        pub = lab.public("pub").peer()
        pub2 = lab.public("pub2").peer()
        pub.call("connect", addr=next(x for x in pub2.ready["addrs"] if "198.18." in x))

        # Static relays, no DHT: the peers know nothing of each other until we connect them.
        a = lab.behind_nat("a").peer("--relay", relay_addr)
        start = time.perf_counter()
        a.wait_info(lambda i: i["relay_addrs"], timeout=30)
        reserved = time.perf_counter() - start
        b = lab.behind_nat("b").peer("--relay", relay_addr)
        b_info = b.wait_info(lambda i: i["relay_addrs"], timeout=30)
        c = lab.behind_nat("c", random=True).peer("--relay", relay_addr)
        c_info = c.wait_info(lambda i: i["relay_addrs"], timeout=30)

        start = time.perf_counter()
        a.call("connect", addr=f"{b_info['relay_addrs'][0]}/p2p/{b.peer_id}", timeout=30)
        relayed = time.perf_counter() - start
        a.wait_info(lambda i: _has_link(i, b.peer_id, {"direct", "hole-punched"}), timeout=60)
        direct = time.perf_counter() - start - relayed

        a.call("connect", addr=f"{c_info['relay_addrs'][0]}/p2p/{c.peer_id}", timeout=30)
        baseline = _rate(pub, pub2, args.messages)
        over_relay = _rate(a, c, args.messages)
        still_relayed = not _has_link(a.call("info"), c.peer_id, {"direct", "hole-punched"})
        hole_punched = _rate(a, b, args.messages)
        baseline_again = _rate(pub2, pub, args.messages)
        bare_reserved, bare_relayed, bare_direct = _bare_libp2p(lab, relay_addr)
        mapped, verified = _port_mapping(lab, relay_addr, pub)
        transports = _quic_vs_tcp(lab, args.messages)

    print(
        f"reservation after the peer is up     {reserved * 1000:8.0f} ms"
        f"   (bare py-libp2p, same relay: {bare_reserved * 1000:.0f} ms)"
    )
    print(f"relayed connection by circuit addr   {relayed * 1000:8.0f} ms")
    print(f"then direct connection (DCUtR)       {direct * 1000:8.0f} ms")
    bare = f"{bare_direct * 1000:.0f} ms" if bare_direct is not None else "none in 30 s"
    print(
        f"  bare py-libp2p, same lab and relay:  relayed {bare_relayed * 1000:.0f} ms,"
        f" then direct {bare}"
    )
    print(
        f"direct messages, public <-> public   {baseline:8.0f} msg/s"
        f"   (baseline, no NAT; again at the end: {baseline_again:.0f})"
    )
    print(f"direct messages, hole-punched        {hole_punched:8.0f} msg/s")
    print(
        f"direct messages, relayed             {over_relay:8.0f} msg/s"
        f"   (port-randomizing NAT; stayed relayed: {still_relayed})"
    )
    print(f"UPnP port mapped after the peer is up {mapped * 1000:8.0f} ms   (miniupnpd router)")
    print(f"  then AutoNAT says public           {verified * 1000:8.0f} ms")
    for kind, row in transports.items():
        print(
            f"{kind:4} public <-> public: connect {row['connect'] * 1000:6.0f} ms"
            f" (bare py-libp2p {row['bare_connect'] * 1000:.0f} ms),"
            f" {row['rate']:6.0f} msg/s, bulk {row['bulk']:5.1f} MiB/s"
        )


if __name__ == "__main__":
    main()
