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
    # A public peer that knows nothing else of it dials the mapped address: a new, direct
    # connection from the public net (the router drops anything it was not told to forward).
    stranger = lab.public("stranger").peer()
    stranger.call("connect", addr=mapped, timeout=30)
    links = next(c for c in stranger.call("info")["connections"] if c["peer"] == peer.peer_id)
    assert [link["kind"] for link in links["links"]] == ["direct"]
    assert any(router_ip in str(link) for link in links["links"])
    no_map = plain.wait_info(lambda i: i["reachability"] != "unknown", timeout=60)
    assert no_map["reachability"] == "private" and no_map["relay_addrs"]
    # Removed on exit: the router's forwarding rule goes when the peer stops.
    port = mapped.split("/tcp/")[1].split("/")[0]
    assert f"dport {port} dnat" in _router_rules(lab)
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
