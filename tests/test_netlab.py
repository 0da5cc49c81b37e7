"""The lab itself: a big lab's hosts can all reach each other (the kernel's ARP table is one
for all namespaces; tests/netlab.py makes room in it while a lab runs). Skips without root."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import netlab

pytestmark = pytest.mark.skipif(bool(netlab.unavailable()), reason=netlab.unavailable() or "ok")

HOSTS = 36
"""36 hosts that each know the other 35: 1 260 ARP entries, past the kernel's default 1 024."""

RESOLVED = {"REACHABLE", "STALE", "DELAY", "PROBE"}

NUDGE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for ip in sys.argv[1:]:
    s.sendto(b"x", (ip, 9))
"""


def _thresh3() -> int:
    return int(Path("/proc/sys/net/ipv4/neigh/default/gc_thresh3").read_text())


def _neighbours(ns: str) -> dict[str, str]:
    """ip -> state of ``ns``'s ARP entries."""
    out = subprocess.run(
        ["ip", "-n", ns, "neigh", "show"], capture_output=True, text=True, check=True
    ).stdout
    return {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.strip()}


def test_every_host_of_a_big_lab_resolves_every_other() -> None:
    before = _thresh3()
    with netlab.Lab() as lab:
        assert _thresh3() >= netlab.NEIGHBOUR_ROOM["gc_thresh3"]
        nodes = [lab.public(f"h{i}") for i in range(HOSTS)]
        ips = [n.ip for n in nodes]
        procs = [  # every host sends one datagram to every other, all at once
            subprocess.Popen(
                ["ip", "netns", "exec", n.ns, sys.executable, "-c", NUDGE]
                + [ip for ip in ips if ip != n.ip]
            )
            for n in nodes
        ]
        for proc in procs:
            assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 10  # the last answers may still be on their way
        while True:
            unresolved = {}
            for node in nodes:
                table = _neighbours(node.ns)
                missing = [ip for ip in ips if ip != node.ip and table.get(ip) not in RESOLVED]
                if missing:
                    unresolved[node.ns] = missing
            if not unresolved or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert not unresolved, f"hosts that could not resolve others: {unresolved}"
    assert _thresh3() == before
