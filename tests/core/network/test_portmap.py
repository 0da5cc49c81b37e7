"""Port mapping (core/network/nat/portmap.py): what a gateway says is checked; in the NAT lab a
peer behind a router running a real ``miniupnpd`` (UPnP, or NAT-PMP alone) gets its port
mapped, AutoNAT confirms it, and a stranger on the public net dials it directly."""

from __future__ import annotations

import select
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from core.network.nat.natpmp import NatPmpGateway, default_gateway
from core.network.nat.portmap import usable_external_ip
from tests import netlab


@pytest.mark.parametrize(
    "said",
    ["10.0.0.1", "192.168.1.1", "172.20.0.1", "100.64.3.4", "127.0.0.1", "0.0.0.0",
     "224.0.0.1", "240.0.0.1", "169.254.1.1", "::1", "", "1.2.3", "x" * 10_000, None, 17,
     "1.2.3.4\x00", "1.2.3.4; rm -rf /"],
)  # fmt: skip
def test_a_gateway_cannot_make_us_advertise_a_useless_address(said: object) -> None:
    assert usable_external_ip(said) is None


def test_public_external_addresses_are_used() -> None:
    assert usable_external_ip("203.0.113.7") == "203.0.113.7"
    assert usable_external_ip(" 198.18.0.9\n") == "198.18.0.9"  # the lab's "internet"


def test_the_default_gateway_comes_from_the_route_table(tmp_path: Path) -> None:
    table = tmp_path / "route"
    table.write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
        "eth0\t00004D0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
        "eth0\t00000000\t01014D0A\t0003\t0\t0\t0\t00000000\n"
    )
    assert default_gateway(table) == "10.77.1.1"
    table.write_text("Iface\tDestination\tGateway\n")
    assert default_gateway(table) is None
    assert default_gateway(tmp_path / "missing") is None


# Outputs of the routing tools as they print them (formats as published from real machines:
# the route(8) page of real-world-systems.com for macOS, O'Reilly's "Running Mac OS X" for
# netstat -rn, simplified.guide and windowsitpro.com for Windows' route print), addresses ours.
MACOS_ROUTE_GET = """   route to: default
destination: default
       mask: default
    gateway: 192.168.1.1
  interface: en0
      flags: <UP,GATEWAY,DONE,STATIC,PRCLONING>
 recvpipe  sendpipe  ssthresh  rtt,msec    rttvar  hopcount      mtu     expire
       0         0         0         0         0         0      1500         0
"""
MACOS_NO_DEFAULT = "route: writing to routing socket: not in table\n"
MACOS_VPN_ROUTE_GET = """   route to: default
destination: default
       mask: default
  interface: utun3
      flags: <UP,DONE,STATIC,PRCLONING>
"""
MACOS_NETSTAT = """Routing tables

Internet:
Destination        Gateway            Flags        Netif Expire
default            link#17            UCSg         utun3
default            10.10.10.1         UGScg          en0
10.10.10/24        link#4             UCS            en0      !
10.10.10.1/32      link#4             UCS            en0      !
127                127.0.0.1          UCS            lo0
127.0.0.1          127.0.0.1          UH             lo0
224.0.0/4          link#4             UmCS           en0      !

Internet6:
Destination                             Gateway                         Flags         Netif Expire
default                                 fe80::1%en0                     UGcg            en0
::1                                     ::1                             UHL             lo0
"""
WINDOWS_ROUTE_PRINT = """===========================================================================
Interface List
 15...3c 52 82 aa bb cc ......Intel(R) Ethernet Connection
 11...f0 9f c2 12 34 56 ......Intel(R) Wi-Fi 6 AX201 160MHz
  1...........................Software Loopback Interface 1
===========================================================================

IPv4 Route Table
===========================================================================
Active Routes:
Network Destination        Netmask          Gateway       Interface  Metric
          0.0.0.0          0.0.0.0      192.168.0.1    192.168.0.23     50
          0.0.0.0          0.0.0.0     192.168.1.1    192.168.1.50     25
        127.0.0.0        255.0.0.0         On-link         127.0.0.1    331
      192.168.1.0    255.255.255.0         On-link      192.168.1.50    281
     192.168.1.50  255.255.255.255         On-link      192.168.1.50    281
===========================================================================
Persistent Routes:
  Network Address          Netmask  Gateway Address  Metric
          0.0.0.0          0.0.0.0       10.9.9.1       1
===========================================================================
"""
WINDOWS_ON_LINK_ONLY = """IPv4 Route Table
===========================================================================
Active Routes:
Network Destination        Netmask          Gateway       Interface  Metric
          0.0.0.0          0.0.0.0         On-link       10.8.0.6     35
===========================================================================
Persistent Routes:
  None
"""


def test_the_default_gateway_is_found_on_macos_and_windows() -> None:
    outputs: dict[str, str | None] = {}

    def run(argv: list[str]) -> str | None:
        return outputs.get(" ".join(argv))

    outputs["route -n get default"] = MACOS_ROUTE_GET
    assert default_gateway(system="Darwin", run=run) == "192.168.1.1"
    # No default route, or one through a VPN with no IPv4 next hop: netstat has the answer.
    outputs["netstat -rn -f inet"] = MACOS_NETSTAT
    for said in (MACOS_NO_DEFAULT, MACOS_VPN_ROUTE_GET, None):
        outputs["route -n get default"] = said
        assert default_gateway(system="Darwin", run=run) == "10.10.10.1"
    outputs["netstat -rn -f inet"] = None  # the tool failed or took too long
    assert default_gateway(system="Darwin", run=run) is None
    outputs["route print -4 0.0.0.0"] = WINDOWS_ROUTE_PRINT  # lowest metric, active only
    assert default_gateway(system="Windows", run=run) == "192.168.1.1"
    for said in (WINDOWS_ON_LINK_ONLY, "", None, "0.0.0.0 0.0.0.0 x y z\n" * 3):
        outputs["route print -4 0.0.0.0"] = said
        assert default_gateway(system="Windows", run=run) is None


def test_a_missing_or_hanging_routing_tool_gives_no_gateway() -> None:
    from core.network.nat import natpmp

    assert natpmp.run_command(["peerdesk-no-such-tool"]) is None
    assert natpmp.run_command(["false"]) is None
    started = time.monotonic()
    old, natpmp.COMMAND_TIMEOUT = natpmp.COMMAND_TIMEOUT, 0.3
    try:
        assert natpmp.run_command(["sleep", "10"]) is None
    finally:
        natpmp.COMMAND_TIMEOUT = old
    assert time.monotonic() - started < 8


async def _natpmp_server(
    answers: list[bytes | list[bytes]], task_status: trio.TaskStatus[int]
) -> None:
    """A NAT-PMP "gateway" on loopback sending ``answers`` in turn, one per request (a list:
    several datagrams for one request)."""
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))
        task_status.started(sock.getsockname()[1])
        for answer in answers:
            _, sender = await sock.recvfrom(64)
            for datagram in answer if isinstance(answer, list) else [answer]:
                if datagram:
                    await sock.sendto(datagram, sender)
        await trio.sleep_forever()


async def test_natpmp_believes_only_well_formed_successful_answers() -> None:
    good = struct.pack("!BBHI4s", 0, 128, 0, 1, socket.inet_aton("198.18.0.7"))
    async with trio.open_nursery() as nursery:
        junk = [b"\xff" * 3, b"\0" * 200, struct.pack("!BBHI4s", 0, 130, 0, 1, b"\1\2\3\4")]
        port = await nursery.start(_natpmp_server, [[*junk, good]])
        with trio.fail_after(5):
            assert await NatPmpGateway("127.0.0.1", port).external_ip() == "198.18.0.7"
        refused = struct.pack("!BBHI4s", 0, 128, 3, 1, b"\1\2\3\4")  # result 3: no network
        port = await nursery.start(_natpmp_server, [refused])
        with trio.fail_after(5):
            assert await NatPmpGateway("127.0.0.1", port).external_ip() is None
        port = await nursery.start(_natpmp_server, [b"", b"", b""])  # silent: bounded wait
        with trio.fail_after(5):
            assert await NatPmpGateway("127.0.0.1", port).external_ip() is None
        mapped = struct.pack("!BBHIHHI", 0, 130, 0, 1, 4001, 4002, 3600)
        wrong_port = struct.pack("!BBHIHHI", 0, 130, 0, 1, 9999, 4002, 3600)
        port = await nursery.start(_natpmp_server, [mapped, wrong_port])
        with trio.fail_after(5):
            assert await NatPmpGateway("127.0.0.1", port).add(4001, 4001, 3600) == 4002
            assert await NatPmpGateway("127.0.0.1", port).add(4001, 4001, 3600) is None
        nursery.cancel_scope.cancel()


async def test_natpmp_maps_udp_with_its_own_opcode() -> None:
    udp = struct.pack("!BBHIHHI", 0, 129, 0, 1, 4001, 4001, 3600)  # opcode 1 (UDP) + 128
    tcp = struct.pack("!BBHIHHI", 0, 130, 0, 1, 4001, 4001, 3600)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_natpmp_server, [[tcp, udp]])  # the TCP answer is ignored
        with trio.fail_after(5):
            assert await NatPmpGateway("127.0.0.1", port).add(4001, 4001, 3600, "udp") == 4001
        port = await nursery.start(_natpmp_server, [[udp], [udp], [udp]])  # wrong opcode
        with trio.fail_after(5):
            assert await NatPmpGateway("127.0.0.1", port).add(4001, 4001, 3600, "tcp") is None
        nursery.cancel_scope.cancel()


lab_missing = netlab.unavailable() or (
    "" if shutil.which("miniupnpd") and shutil.which("nft") else "needs miniupnpd and nft"
)


@pytest.fixture
def lab() -> Iterator[netlab.Lab]:
    with netlab.Lab() as lab:
        yield lab


@pytest.mark.skipif(bool(lab_missing), reason=lab_missing or "ok")
@pytest.mark.parametrize("upnp", [True, False], ids=["upnp", "natpmp-only"])
def test_a_peer_behind_a_mapping_router_is_mapped_verified_and_dialled_directly(
    lab: netlab.Lab, tmp_path: Path, upnp: bool
) -> None:
    relay = lab.public("relay").peer("--relay-service")
    relay_addr = next(a for a in relay.ready["addrs"] if "198.18." in a)
    pub = lab.public("pub").peer("--bootstrap", relay_addr)
    pub_addr = next(a for a in pub.ready["addrs"] if "198.18." in a)
    # Control, and start-up not held up: behind a router without UPnP nothing is mapped
    # and the peer carries on as usual (relay reservation, AutoNAT says private).
    plain = lab.behind_nat("n").peer("--bootstrap", relay_addr, "--bootstrap", pub_addr,
                                     "--port-mapping")  # fmt: skip
    node = netlab.upnp_router(lab, "m", lab.public("stun"), tmp_path, upnp=upnp)
    peer = node.peer("--bootstrap", relay_addr, "--bootstrap", pub_addr, "--port-mapping")
    router_ip = node.router_ip  # type: ignore[attr-defined]
    info = peer.wait_info(lambda i: any(f"/ip4/{router_ip}/tcp/" in a for a in i["addrs"]), 30)
    mapped = next(a for a in info["addrs"] if f"/ip4/{router_ip}/tcp/" in a)
    # AutoNAT may have said private before the mapping; the new address is asked about again.
    peer.wait_info(lambda i: i["reachability"] == "public", timeout=60)
    # Its QUIC (UDP) port is mapped and advertised too.
    quic_prefix = f"/ip4/{router_ip}/udp/"
    info = peer.wait_info(lambda i: any(quic_prefix in a for a in i["addrs"]), 30)
    mapped_quic = next(a for a in info["addrs"] if quic_prefix in a and "/quic-v1/" in a)
    # Public peers that know nothing else of it dial the mapped addresses, over TCP and over
    # QUIC: new, direct connections from the public net (the router drops anything it was
    # not told to forward).
    for name, addr, transport in (("stranger", mapped, "/tcp/"), ("quicker", mapped_quic, "/udp/")):
        stranger = lab.public(name).peer()
        stranger.call("connect", addr=addr, timeout=30)
        conns = stranger.call("info")["connections"]
        links = next(c for c in conns if c["peer"] == peer.peer_id)["links"]
        assert [link["kind"] for link in links] == ["direct"]
        assert all(router_ip in a and transport in a for link in links for a in link["addrs"])
    no_map = plain.wait_info(lambda i: i["reachability"] != "unknown", timeout=60)
    assert no_map["reachability"] == "private" and no_map["relay_addrs"]
    # Removed on exit: the router's forwarding rule goes when the peer stops.
    port = mapped.split("/tcp/")[1].split("/")[0]
    udp_port = mapped_quic.split("/udp/")[1].split("/")[0]
    rules = _router_rules(lab)
    # miniupnpd matches the IP protocol byte: 0x6 is TCP, 0x11 UDP.
    assert f"0x6 th dport {port} dnat" in rules and f"0x11 th dport {udp_port} dnat" in rules
    peer.close()
    assert peer.proc.returncode == 0
    assert "dnat" not in _router_rules(lab)


def _router_rules(lab: netlab.Lab) -> str:
    argv = ["ip", "netns", "exec", f"{lab.prefix}-mr", "nft", "list", "chain", "inet", "pdupnp"]
    return subprocess.run([*argv, "mu_pre"], capture_output=True, text=True, check=True).stdout


def _wait_line(proc: subprocess.Popen[str], wanted: str, timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if readable:
            line = proc.stdout.readline()
            if wanted in line:
                return line
    raise TimeoutError(f"the gateway never got {wanted!r}")


@pytest.mark.skipif(bool(netlab.unavailable()), reason=netlab.unavailable() or "ok")
@pytest.mark.parametrize(
    ("mode", "last_request"),
    [("mute", "get /rootDesc.xml"), ("garbage", "get /rootDesc.xml"),
     ("private", "post GetExternalIPAddress")],
)  # fmt: skip
def test_a_hostile_gateway_neither_blocks_nor_crashes_nor_fools_the_peer(
    lab: netlab.Lab, mode: str, last_request: str
) -> None:
    node = netlab.hostile_upnp_router(lab, "h", mode)
    peer = node.peer("--port-mapping")  # its first answer comes once it runs: never blocked
    igd = node.igd  # type: ignore[attr-defined]
    _wait_line(igd, "searched", timeout=20)
    _wait_line(igd, last_request, timeout=20)
    time.sleep(1.0)  # let the client act on what it got
    info = peer.call("info", timeout=5)  # still answering
    router_ip = node.router_ip  # type: ignore[attr-defined]
    assert not any(router_ip in a or "10.99." in a for a in info["addrs"]), info["addrs"]
    peer.close()
    assert peer.proc.returncode == 0  # stopped on its own, even with a call to a mute gateway
