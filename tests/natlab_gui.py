"""The desktop app (real window, real bridge and core) in a lab namespace (tests/netlab.py),
started on a fresh profile that knows only the given bootstrap peers, with the default listen
addresses (TCP and QUIC). It watches the status bar until its reachability text starts with
``--expect`` (or ``--timeout`` passes), optionally saves a picture of the window, and prints
one JSON line: ``{"ok": bool, "text": <reachability text>, "state": <state text>,
"addrs": [...]}``. Run by tests/gui/test_gui_nat.py through ``ip netns exec``.

    python -m tests.natlab_gui DATA_DIR --bootstrap ADDR --expect "Public" [--shot out.png]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path


def main(args: argparse.Namespace) -> int:
    import qasync
    from PySide6.QtWidgets import QApplication

    from core.profile.folder import Profile
    from core.profile.settings import Settings
    from gui.app import App

    qt = QApplication(sys.argv)
    loop = qasync.QEventLoop(qt)
    asyncio.set_event_loop(loop)
    data = Path(args.data_dir)
    Profile.open(data).save_settings(
        Settings(bootstrap=args.bootstrap, mdns=False, port_mapping=False, notifications=False)
    )
    peerdesk = App(data)
    if args.maximized:  # under a window manager: as a user on a 1280x800 screen sees it
        peerdesk.window.showMaximized()
    else:
        peerdesk.window.resize(1280, 800)
        peerdesk.window.show()
    peerdesk.start_core()
    window = peerdesk.window

    async def watch() -> dict[str, object]:
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline and not window.reach_label.text().startswith(args.expect):
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)  # one more repaint of the status bar before the picture
        if args.shot:
            window.grab().save(args.shot)
        peer = peerdesk.bridge.peer
        return {
            "ok": window.reach_label.text().startswith(args.expect),
            "text": window.reach_label.text(),
            "state": window.state_label.text(),
            "addrs": list(peer.listen_addrs()) if peer is not None else [],
        }

    with loop:
        result = loop.run_until_complete(watch())
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
        if args.hold:  # keep the window up (for a screen grab from outside) until stdin closes
            loop.run_until_complete(loop.run_in_executor(None, sys.stdin.read))
    peerdesk.window.history.commit()
    peerdesk.bridge.stop()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("--bootstrap", action="append", default=[])
    parser.add_argument("--expect", required=True)
    parser.add_argument("--timeout", type=float, default=90.0)
    parser.add_argument("--shot", default="")
    parser.add_argument("--hold", action="store_true")
    parser.add_argument("--maximized", action="store_true")
    sys.exit(main(parser.parse_args()))
