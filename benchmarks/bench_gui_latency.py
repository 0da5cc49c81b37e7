"""Does the window stay responsive while the core works?

Runs the real main window (offscreen) over a real core and measures the worst lateness of a
10 ms QTimer — first idle, then while a 1 GiB file is stored, then while 1000 topic messages
from a second peer (another process) arrive and are shown. Goal: under 50 ms.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_gui_latency.py [--size-mib N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import qasync  # noqa: E402
from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

PUBLISHER = """
import sys, trio
sys.path.insert(0, {root!r})
from core.libp2p_compat import quiet_library_logging
from core.peer import PeerConfig, new_peer
quiet_library_logging()

async def main():
    async with trio.open_nursery() as nursery:
        peer = await nursery.start(new_peer(PeerConfig(
            listen_addrs=["/ip4/127.0.0.1/tcp/0"], bootstrap=[], dht_ready_wait=0.1)).run)
        await peer.connect({addr!r})
        await peer.topics.subscribe("bench", 5.0)
        print("ready", flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)
        for i in range(1000):
            await peer.publish("bench", {{"text": f"message {{i}}"}})
        await trio.to_thread.run_sync(sys.stdin.readline)
        peer.stop()

trio.run(main)
"""


class Lateness:
    """A 10 ms timer that records how late each tick fires."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.ticks = 0
        self._last = time.perf_counter()
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.worst = max(self.worst, (now - self._last) * 1000 - 10)
        self.ticks += 1
        self._last = now

    def start(self) -> None:
        self.worst, self.ticks = 0.0, 0
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> float:
        self.timer.stop()
        return self.worst


async def run(size_mib: int) -> None:
    from core.profile.folder import Profile
    from core.profile.settings import Settings
    from gui.app import App

    tmp = Path(tempfile.mkdtemp(prefix="peerdesk-bench-"))
    Profile.open(tmp / "me").save_settings(
        Settings(listen_addrs=["/ip4/127.0.0.1/tcp/0"], bootstrap=[], mdns=False)
    )
    app = App(tmp / "me")
    app.window.show()
    started = asyncio.get_event_loop().create_future()
    app.bridge.started.connect(lambda p: started.done() or started.set_result(p))
    app.start_core()
    peer = await started
    meter = Lateness()

    meter.start()
    await asyncio.sleep(2)
    print(f"idle                          worst lateness {meter.stop():6.1f} ms")

    big = tmp / "big.bin"
    block = os.urandom(1 << 20)
    with big.open("wb") as fh:
        for _ in range(size_mib):
            fh.write(block)
    meter.start()
    t = time.perf_counter()
    await app.bridge.call(peer.files.store_file, "big.bin", big)
    elapsed = time.perf_counter() - t
    print(
        f"storing {size_mib} MiB ({size_mib / elapsed:5.1f} MB/s)  worst lateness "
        f"{meter.stop():6.1f} ms over {meter.ticks} ticks"
    )

    # The other peer is another process, as it would be: in this one it would compete for
    # the GIL and measure itself rather than the app.
    loop = asyncio.get_event_loop()
    pool = ThreadPoolExecutor(1)  # not qasync's default: its QThreads abort at exit if alive
    publisher = await loop.run_in_executor(
        pool,
        lambda: subprocess.Popen(
            [sys.executable, "-c", PUBLISHER.format(root=str(ROOT), addr=peer.listen_addrs()[0])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ),
    )
    app.window.join_topic("bench")
    view = app.window._conversation("topic:bench")
    assert (await loop.run_in_executor(pool, publisher.stdout.readline)).strip() == "ready"
    await asyncio.sleep(1.5)
    meter.start()
    t = time.perf_counter()
    publisher.stdin.write("go\n")
    publisher.stdin.flush()
    while len(view.model.messages) < 1000 and time.perf_counter() - t < 60:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - t
    print(
        f"1000 topic messages shown in {elapsed:5.2f} s   worst lateness "
        f"{meter.stop():6.1f} ms ({len(view.model.messages)} shown)"
    )
    publisher.stdin.close()
    publisher.wait(20)
    app.window.close()
    app.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()
    qt = QApplication(sys.argv)
    loop = qasync.QEventLoop(qt)
    asyncio.set_event_loop(loop)
    with loop:
        loop.run_until_complete(run(args.size_mib))


if __name__ == "__main__":
    main()
