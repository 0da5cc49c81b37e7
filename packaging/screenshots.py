"""Regenerate the README's screenshots: the real window over a real core, with two more peers
on loopback providing real data (topic chat, joins and leaves, direct messages, files).

    .venv/bin/python packaging/screenshots.py [OUT_DIR]

For each screen size in SIZES it starts a virtual X screen (Xvfb) with a real window manager
(fluxbox), lets the app place and size its window itself as on a laptop of that size, and
takes the whole screen with ImageMagick's ``import`` (title bar and menus included:
``screen-1366x768.png``…). The first size also gives main-window.png and one PNG per pane
(default OUT_DIR: docs/screenshots). ``--here NAME`` runs one scene on the current $DISPLAY.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SIZES = ["1366x768", "1280x800", "1024x768"]

import qasync  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402


@contextmanager
def shots_dir(given: Path | None = None) -> Iterator[Path]:
    """The scene's folder (profiles, downloads, the imported video): a fresh
    /tmp/peerdesk-shots-*, or ``given`` (the one the parent made for its ``--here`` child),
    removed on the way out, error or not. Each run left one behind, 24 MiB and more."""
    tmp = given if given is not None else Path(tempfile.mkdtemp(prefix="peerdesk-shots-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def settle(seconds: float) -> None:
    await asyncio.sleep(seconds)
    QApplication.processEvents()


async def scene(out: Path, size: str, panes: bool, tmp: Path) -> None:
    """The scene in ``tmp`` (profiles, downloads, files: the caller removes it); the
    other peers and the app are stopped on the way out, error or not."""
    from core.peer import PeerConfig, new_peer
    from core.profile.folder import Profile
    from core.profile.settings import Settings
    from core.runtime import CoreRuntime
    from gui.app import App

    Profile.open(tmp / "me").save_settings(
        Settings(
            listen_addrs=["/ip4/127.0.0.1/tcp/0"],
            bootstrap=[],
            mdns=False,
            file_update_topic="lobby",
            display_name="Sam",
            download_dir=str(tmp / "Downloads"),
        )
    )
    (tmp / "Downloads").mkdir()
    app = App(tmp / "me")
    others = []
    try:
        app.window.show()
        started = asyncio.get_event_loop().create_future()
        app.bridge.started.connect(lambda p: started.done() or started.set_result(p))
        app.start_core()
        me = await started

        for name, chosen in (("alice", "Alice"), ("bob", "")):  # bob keeps his derived name
            rt = CoreRuntime(
                new_peer(
                    PeerConfig(
                        listen_addrs=["/ip4/127.0.0.1/tcp/0"],
                        bootstrap=[],
                        dht_ready_wait=0.1,
                        files_dir=str(tmp / name),
                        display_name=chosen,
                    )
                ).run
            )
            rt.start()
            rt.ready.wait(15)
            others.append(rt)

        def on(rt: CoreRuntime, fn, *args):
            return asyncio.wrap_future(rt.submit(fn, *args))

        async def sync(rt: CoreRuntime, fn, *args):
            async def run():
                return fn(*args)

            return await on(rt, run)

        alice, bob = (rt.value for rt in others)
        window = app.window
        window.monitor.topic_input.setText("lobby")
        window.monitor._add()
        window.join_topic("lobby")
        for rt, p in zip(others, (alice, bob), strict=True):
            await on(rt, p.connect, me.listen_addrs()[0])
            await sync(rt, p.start_protocol, "/chat/1.0.0")
        await on(others[0], alice.topics.subscribe, "lobby", 5.0)
        await on(others[1], bob.topics.subscribe, "lobby", 5.0)
        await settle(1.5)
        for text, rt, p in [
            ("Hi everyone! Anyone up for a game tonight?", others[0], alice),
            ("Count me in — 8 pm?", others[1], bob),
            ("8 works. I'll put the rules in my files.", others[0], alice),
        ]:
            await on(rt, p.publish, "lobby", {"text": text})
            await settle(0.3)
        view = window._conversation("topic:lobby")
        view.send_value({"text": "Great, see you both then!"})
        for i in range(40):
            await on(
                others[i % 2],
                (alice, bob)[i % 2].publish,
                "lobby",
                {"text": f"score update {i}"} if i % 5 else {"text": "ping"},
            )
            await asyncio.sleep(0.05)
        long_text = (
            "House rules for tonight: everyone brings one game, we play two rounds of each, and "
            "the winner of a round picks the next game.\nScores go in the shared sheet."
        )
        await on(others[0], alice.publish, "lobby", {"text": long_text})
        await on(others[1], bob.unsubscribe, "lobby")
        await settle(1.5)
        await on(others[1], bob.topics.subscribe, "lobby", 5.0)
        await settle(1.5)

        files = me.files
        for path, data in [
            ("rules/board-game-rules.txt", b"1. Be kind.\n2. Have fun.\n" * 40),
            ("rules/scoring.json", b'{"win": 3, "draw": 1}\n'),
            ("photos/table.png", b"\x89PNG\r\n\x1a\n" + bytes(4000)),
            ("notes.md", b"# Game night\n\nBring snacks.\n"),
        ]:
            await app.bridge.call(files.store_file, path, data)
        await app.bridge.call(files.mkdir, "shared-with-bob")
        pdf, _root = await on(
            others[0], alice.files.store_file, "rules.pdf", b"%PDF-1.4\n" + bytes(900_000)
        )
        # Through the window, as a user would: they are listed in the Transfers pane.
        video = tmp / "game-night.mp4"
        video.write_bytes(os.urandom(24 * 1048576))
        window.files.store_paths("", [video])
        window.files.save(pdf, str(tmp / "Downloads" / "rules.pdf"), str(alice.peer_id))

        direct = window.open_direct(str(alice.peer_id))
        direct.send_value({"text": "Can you send me the score sheet?"})
        await on(
            others[0],
            alice.send,
            str(me.peer_id),
            "/chat/1.0.0",
            {"text": "Sure — it's in my files as rules.pdf"},
        )
        await app.bridge.call(_add_contact(me, str(bob.peer_id)))
        await settle(3)
        window.refresh()
        await settle(1)
        for row in range(window.files_pane.model.rowCount()):
            window.files_pane.view.expand(window.files_pane.model.index(row, 0))
        window.docks["Topic monitor"].raise_()
        await settle(1)

        window.conversations.setCurrentWidget(view)
        await settle(0.5)
        shot = await asyncio.create_subprocess_exec(
            "import", "-window", "root", str(out / f"screen-{size}.png")
        )
        if await shot.wait() != 0:
            raise RuntimeError("ImageMagick's import could not take the screen")
        if panes:
            window.grab().save(str(out / "main-window.png"))
            for title, dock in window.docks.items():
                dock.raise_()
                await settle(0.2)
                dock.widget().grab().save(str(out / f"pane-{title.lower().replace(' ', '-')}.png"))
            window.conversations.grab().save(str(out / "topic-chat.png"))
            window.conversations.setCurrentWidget(direct)
            await settle(0.5)
            window.conversations.grab().save(str(out / "direct-messages.png"))
        print(f"screenshots of {size} written to {out}")
    finally:
        for rt in others:
            rt.stop()
        app.window.close()
        app.shutdown()


def _add_contact(peer, peer_id: str):
    async def add():
        return peer.add_peers([peer_id])

    return add


def run_here(out: Path, size: str, panes: bool, tmp: Path | None = None) -> None:
    from core.libp2p_compat import quiet_library_logging

    quiet_library_logging()
    qt = QApplication(sys.argv[:1])
    loop = qasync.QEventLoop(qt)
    asyncio.set_event_loop(loop)
    with loop, shots_dir(tmp) as folder:
        loop.run_until_complete(scene(out, size, panes, folder))


def _free_display() -> int:
    for number in range(90, 200):
        if (
            not Path(f"/tmp/.X11-unix/X{number}").exists()
            and not Path(f"/tmp/.X{number}-lock").exists()
        ):
            return number
    raise RuntimeError("no free X display number")


def run_on_virtual_screen(out: Path, size: str, panes: bool) -> None:
    """Xvfb + fluxbox of one size, the scene on it, both stopped afterwards; the scene's
    folder is made here and removed here, so a child killed at its timeout leaves none."""
    for tool in ("Xvfb", "fluxbox", "import"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: bash packaging/setup.sh installs it")
    display = f":{_free_display()}"
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    with shots_dir() as tmp:
        _run_on(display, env, tmp, out, size, panes)


def _run_on(
    display: str, env: dict[str, str], tmp: Path, out: Path, size: str, panes: bool
) -> None:
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", f"{size}x24", "-nolisten", "tcp"])
    wm = None
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{display[1:]}").exists():
            if time.monotonic() > deadline:
                raise RuntimeError("Xvfb did not start")
            time.sleep(0.1)
        wm = subprocess.Popen(
            ["fluxbox"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(1.5)  # the window manager takes the screen before the app maps its window
        args = [sys.executable, __file__, "--here", size, str(out), "--tmp", str(tmp)]
        args += ["--panes"] if panes else []
        subprocess.run(args, env=env, check=True, timeout=180)
    finally:
        for proc in (wm, xvfb):
            if proc is not None:
                proc.terminate()
                proc.wait(10)


def main() -> None:
    # A terminated run unwinds (its finally blocks stop the peers and remove the folder).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    argv = sys.argv[1:]
    if argv[:1] == ["--here"]:
        out = Path(argv[2])
        tmp = Path(argv[argv.index("--tmp") + 1]) if "--tmp" in argv else None
        run_here(out, argv[1], "--panes" in argv, tmp)
        return
    out = Path(argv[0]) if argv else ROOT / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    for i, size in enumerate(SIZES):
        run_on_virtual_screen(out, size, panes=i == 0)


if __name__ == "__main__":
    main()
