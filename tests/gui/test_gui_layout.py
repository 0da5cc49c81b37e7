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
import json, sys, time
from pathlib import Path
from PySide6.QtWidgets import QApplication
app = QApplication([])
from gui.bridge import CoreBridge
from gui.panes.log import LogView, QtLogHandler
from gui.mainwindow import MainWindow

def fits(w):
    return w.screen().availableGeometry().contains(w.frameGeometry())

def measure(w, settle=0.0):
    end = time.monotonic() + settle  # the window's own checks run from timers
    app.processEvents()
    while time.monotonic() < end and not fits(w):
        app.processEvents()
        time.sleep(0.02)
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
# A caller that sizes the window past the screen before showing it (a script, a test
# harness), then a maximize and back: the frame still ends up on the screen.
big = MainWindow(CoreBridge(), Path(sys.argv[1] + "-big"), LogView(QtLogHandler()))
if len(sys.argv) > 2:
    big.fit_timer.timeout.disconnect()  # the check that it fails without keep_on_screen
available = big.screen().availableGeometry()
big.resize(available.width() + 400, available.height() + 300)
big.show()
out["oversize"] = measure(big, 1.5)
big.showMaximized()
app.processEvents()
big.showNormal()
out["unmaximized"] = measure(big, 1.5)
big.close()
print(json.dumps(out))
"""


def probe(
    tmp_path: Path, width: int, height: int, profile: str = "p", *, unguarded: bool = False
) -> dict:
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
        [sys.executable, "-c", PROBE, str(tmp_path / profile), *(["x"] if unguarded else [])],
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


@pytest.mark.parametrize("size", [(1280, 800), (1366, 768)])
def test_a_window_sized_past_the_screen_is_brought_onto_it(tmp_path: Path, size: tuple) -> None:
    out = probe(tmp_path, *size)
    assert inside(out["oversize"]["frame"], out["available"]), out
    assert inside(out["unmaximized"]["frame"], out["available"]), out
    # the panes' minimum sizes leave room for a window manager's frame on a laptop screen
    frame_w, frame_h = 12, 40
    assert out["oversize"]["min"][0] + frame_w <= out["available"][2]
    assert out["oversize"]["min"][1] + frame_h <= out["available"][3]
    # and without the check the same window would not fit: this test can fail
    bare = probe(tmp_path, *size, profile="bare", unguarded=True)
    assert not inside(bare["oversize"]["frame"], bare["available"])


@pytest.mark.parametrize("size", [(1280, 800), (1366, 768)])
def test_an_oversize_saved_geometry_comes_back_inside_a_laptop_screen(
    tmp_path: Path, size: tuple
) -> None:
    probe(tmp_path, 2560, 1440, profile="moved")
    out = probe(tmp_path, *size, profile="moved")
    assert inside(out["first"]["frame"], out["available"]), out
    assert inside(out["reset"]["frame"], out["available"]), out
