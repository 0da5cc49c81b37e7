"""The window on small screens: each case runs the real window in a fresh offscreen Qt whose
one screen has a laptop's size (a Qt application has one set of screens for its lifetime)."""

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
from gui.bridge import CoreBridge
from gui.panes.log import LogView, QtLogHandler
from gui.mainwindow import MainWindow

def measure(w):
    app.processEvents()
    hint = w.minimumSizeHint()
    return {"min": [hint.width(), hint.height()], "geometry": list(w.geometry().getRect()),
            "frame": list(w.frameGeometry().getRect())}

w = MainWindow(CoreBridge(), Path(sys.argv[1]), LogView(QtLogHandler()))
w.show()
out = {"available": list(w.screen().availableGeometry().getRect()), "first": measure(w)}
peer = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
cid = "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby"
w.open_direct(peer)
w.open_topic("a-topic-with-a-very-long-name-" * 4)
w.files_pane.root_label.setText(f"Fetching {cid * 3}…")
w.files_pane.progress_row("x", f"Adding {'folder/' * 30}file.bin")
w.topics.set_members("t", [peer] * 3, {peer: "n" * 200})
w.peers.set_identity(peer * 3, ["/ip4/127.0.0.1/tcp/4001/p2p/" + peer])
w.state_label.setText("Online — " + "x" * 400)
w.statusBar().showMessage("Could not do it: " + "y" * 400)
out["long_labels"] = measure(w)
w.reset_layout()
out["reset"] = measure(w)
out["visible_docks"] = sorted(t for t, d in w.docks.items() if d.isVisibleTo(w))
w.close()
print(json.dumps(out))
"""


def probe(tmp_path: Path, width: int, height: int, profile: str = "p") -> dict:
    config = tmp_path / f"screen-{width}x{height}.json"
    config.write_text(
        json.dumps(
            {
                "screens": [
                    {
                        "name": "laptop",
                        "x": 0,
                        "y": 0,
                        "width": width,
                        "height": height,
                        "logicalDpi": 96,
                        "logicalBaseDpi": 96,
                        "dpr": 1,
                    }
                ]
            }
        )
    )
    env = {**os.environ, "QT_QPA_PLATFORM": f"offscreen:configfile={config}"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / profile)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def inside(frame: list[int], available: list[int]) -> bool:
    x, y, w, h = frame
    ax, ay, aw, ah = available
    return x >= ax and y >= ay and x + w <= ax + aw and y + h <= ay + ah


@pytest.mark.parametrize("size", [(1024, 768), (1366, 768), (1280, 800)])
def test_window_fits_the_screen_and_no_label_widens_it(tmp_path: Path, size: tuple) -> None:
    out = probe(tmp_path, *size)
    first, later = out["first"], out["long_labels"]
    assert first["min"][0] <= 1000 and first["min"][1] <= 650
    assert later["min"][0] <= 1000 and later["min"][1] <= 650
    assert inside(first["frame"], out["available"]), out
    # long ids, CIDs, topic names and status texts: not one pixel wider
    assert later["geometry"][2] == first["geometry"][2]
    assert later["min"][0] <= first["min"][0] + 2
    assert inside(out["reset"]["frame"], out["available"])
    assert out["visible_docks"] == ["Files", "Log", "Peers", "Topic monitor", "Topics", "Transfers"]


def test_a_window_saved_on_a_bigger_screen_comes_back_on_a_small_one(tmp_path: Path) -> None:
    probe(tmp_path, 1920, 1080, profile="moved")
    out = probe(tmp_path, 1024, 768, profile="moved")
    assert inside(out["first"]["frame"], out["available"]), out
