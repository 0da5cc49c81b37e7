"""The desktop app tells the truth about reachability: run for real (window, bridge, core;
offscreen) in the NAT lab (tests/netlab.py, needs root), behind a MASQUERADE router with a
public relay it says "Behind NAT — reachable via relay …" in its status bar, and on the
public net it says "Public". Each app is a process in its namespace (tests/natlab_gui.py)."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from tests import netlab

pytestmark = pytest.mark.skipif(bool(netlab.unavailable()), reason=netlab.unavailable() or "ok")

WAIT = 120.0


@pytest.fixture
def lab() -> Iterator[netlab.Lab]:
    with netlab.Lab() as lab:
        yield lab


def _public_addr(peer: netlab.RunnerPeer) -> str:
    return next(a for a in peer.ready["addrs"] if "198.18." in a and "/tcp/" in a)


def _result(proc: subprocess.Popen[str]) -> dict[str, object]:
    """The app's JSON answer (anything else it prints on the way is kept for the message)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + WAIT + 30
    said: list[str] = []
    while time.monotonic() < deadline:
        readable, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
        line = proc.stdout.readline() if readable else ""
        if not line:
            break
        try:
            answer = json.loads(line)
        except ValueError:
            answer = None
        if isinstance(answer, dict) and "ok" in answer:
            return answer
        said.append(line)
    raise AssertionError(f"no answer from the desktop app (exit {proc.poll()}): {said[-20:]}")


def _desktop(node: netlab.Node, folder: Path, expect: str, *bootstrap: str) -> dict[str, object]:
    argv = [sys.executable, "-m", "tests.natlab_gui", str(folder), "--expect", expect]
    argv += ["--timeout", str(WAIT)]
    for addr in bootstrap:
        argv += ["--bootstrap", addr]
    proc = node.spawn(*argv)
    try:
        return _result(proc)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def test_the_status_bar_says_behind_nat_via_relay_and_public(
    lab: netlab.Lab, tmp_path: Path
) -> None:
    relay = lab.public("relay").peer("--relay-service")
    pub = lab.public("pub").peer("--bootstrap", _public_addr(relay))
    servers = (_public_addr(relay), _public_addr(pub))  # two AutoNAT servers to agree

    behind = _desktop(
        lab.behind_nat("g"), tmp_path / "behind", "Behind NAT — reachable via relay", *servers
    )
    assert behind["ok"], behind
    assert str(behind["state"]).startswith("Online"), behind
    # The desktop's default listen addresses: TCP and QUIC, advertised on the LAN address.
    addrs = [str(a) for a in behind["addrs"]]  # type: ignore[union-attr]
    assert any("/tcp/" in a for a in addrs) and any("/quic-v1" in a for a in addrs), addrs
    assert not any("/0.0.0.0/" in a for a in addrs), addrs

    public = _desktop(lab.public("gp"), tmp_path / "public", "Public", *servers)
    assert public["ok"] and public["text"] == "Public", public
