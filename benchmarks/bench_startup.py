"""How fast the desktop app is on screen, and how fast its peer is online.

Spawns a fresh interpreter (nothing imported yet) that runs the app's own start-up path,
offscreen, and reports: process start → window shown, and → peer started (py-libp2p imported,
host listening). Median of 5 runs. Goal: the window within ~1.5 s.

    .venv/bin/python benchmarks/bench_startup.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import time
t0 = time.perf_counter()
import sys
sys.path.insert(0, {root!r})
import asyncio, qasync
from PySide6.QtWidgets import QApplication
from gui.app import App
qt = QApplication([])
loop = qasync.QEventLoop(qt)
asyncio.set_event_loop(loop)
app = App(__import__("pathlib").Path({data!r}))
app.window.show()
qt.processEvents()
shown = time.perf_counter() - t0
done = loop.create_future()
app.bridge.started.connect(lambda _p: done.set_result(time.perf_counter() - t0))
app.start_core()
with loop:
    online = loop.run_until_complete(done)
print(shown, online)
app.shutdown()
"""


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from core.profile.folder import Profile
    from core.profile.settings import Settings

    shown, online = [], []
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    for _ in range(5):
        with tempfile.TemporaryDirectory() as tmp:
            Profile.open(Path(tmp)).save_settings(
                Settings(listen_addrs=["/ip4/127.0.0.1/tcp/0"], bootstrap=[], mdns=False)
            )
            out = subprocess.run(
                [sys.executable, "-c", CHILD.format(root=str(ROOT), data=tmp)],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )
            a, b = map(float, out.stdout.split()[-2:])
            shown.append(a)
            online.append(b)
    print(
        f"window shown   median {statistics.median(shown):5.2f} s  (runs: "
        f"{', '.join(f'{x:.2f}' for x in shown)})"
    )
    print(
        f"peer online    median {statistics.median(online):5.2f} s  (runs: "
        f"{', '.join(f'{x:.2f}' for x in online)})"
    )


if __name__ == "__main__":
    main()
