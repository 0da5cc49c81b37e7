"""The Peers table at laptop window sizes: with real-looking long addresses (a relayed /p2p/…/
p2p-circuit/p2p/… one, IPv6) and a long protocol list, its columns fit the pane, no
horizontal scrollbar. The real window in a fresh offscreen Qt whose one screen has the
laptop's size (as tests/gui/test_gui_layout.py does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, sys
from pathlib import Path
from PySide6.QtWidgets import QApplication
app = QApplication([])
from core.snapshots import Connection, Link
from gui.bridge import CoreBridge
from gui.panes.log import LogView, QtLogHandler
from gui.mainwindow import MainWindow
from tests.fake_client import empty_info
import dataclasses

w = MainWindow(CoreBridge(), Path(sys.argv[1]), LogView(QtLogHandler()))
w.show()
peer = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
relay = "12D3KooWRelayRelayRelayRelayRelayRelayRelayRelayRela"
circuit = f"/ip4/203.0.113.77/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{peer}"
six = f"/ip6/2001:db8:85a3:1234:5678:8a2e:370:7334/udp/4001/quic-v1/p2p/{peer}"
protocols = tuple(f"/some-app/protocol-number-{i}/1.0.0" for i in range(12))
conns = tuple(
    Connection(peer=peer[:-2] + f"{i:02d}", addrs=(addr,), direction="outbound",
               kind=kind, links=(Link((addr,), "outbound", kind),), latency_ms=123.4,
               protocols=protocols, contact=bool(i % 2), since=1.0,
               name="A rather long display name " * 2)
    for i, (addr, kind) in enumerate([(circuit, "relayed"), (six, "hole-punched"),
                                      (circuit, "direct")])
)
w.peers_model.update_from_info(dataclasses.replace(empty_info(), connections=conns))
w.reset_layout()
for _ in range(5):
    app.processEvents()
table = w.peers.table
bar = table.horizontalScrollBar()
print(json.dumps({"window": list(w.geometry().getRect()), "viewport": table.viewport().width(),
                  "header": table.horizontalHeader().length(), "bar_max": bar.maximum(),
                  "bar_visible": bar.isVisible(), "visible": table.isVisible(),
                  "sections": [table.horizontalHeader().sectionSize(i) for i in range(5)]}))
"""


def probe(tmp_path: Path, width: int, height: int) -> dict:
    config = tmp_path / f"screen-{width}x{height}.json"
    screen = {"name": "laptop", "x": 0, "y": 0, "width": width, "height": height}
    screen |= {"logicalDpi": 96, "logicalBaseDpi": 96, "dpr": 1}
    config.write_text(json.dumps({"screens": [screen]}))
    env = {**os.environ, "QT_QPA_PLATFORM": f"offscreen:configfile={config}"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "p")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("size", [(1280, 800), (1366, 768)])
def test_peers_table_needs_no_horizontal_scrollbar(tmp_path: Path, size: tuple) -> None:
    out = probe(tmp_path, *size)
    assert out["visible"], out
    assert out["header"] <= out["viewport"], json.dumps(out)
    assert out["bar_max"] == 0 and not out["bar_visible"], out
