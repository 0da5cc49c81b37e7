"""Regenerate the README's screenshots: the real window over a real core, with two more peers
on loopback providing real data (topic chat, joins and leaves, direct messages, files).

    xvfb-run -s "-screen 0 1400x900x24" .venv/bin/python packaging/screenshots.py [OUT_DIR]

Writes main-window.png plus one PNG per pane (default OUT_DIR: docs/screenshots).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import qasync  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402


async def settle(seconds: float) -> None:
    await asyncio.sleep(seconds)
    QApplication.processEvents()


async def scene(out: Path) -> None:
    from core.peer import PeerConfig, new_peer
    from core.profile import Profile
    from core.runtime import CoreRuntime
    from core.settings import Settings
    from gui.app import App

    tmp = Path(tempfile.mkdtemp(prefix="peerdesk-shots-"))
    Profile.open(tmp / "me").save_settings(
        Settings(
            listen_addrs=["/ip4/127.0.0.1/tcp/0"],
            bootstrap=[],
            mdns=False,
            file_update_topic="lobby",
        )
    )
    app = App(tmp / "me")
    app.window.resize(1360, 860)
    app.window.show()
    started = asyncio.get_event_loop().create_future()
    app.bridge.started.connect(lambda p: started.done() or started.set_result(p))
    app.start_core()
    me = await started

    others = []
    for name in ("alice", "bob"):
        rt = CoreRuntime(
            new_peer(
                PeerConfig(
                    listen_addrs=["/ip4/127.0.0.1/tcp/0"],
                    bootstrap=[],
                    dht_ready_wait=0.1,
                    files_dir=str(tmp / name),
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
    await on(others[0], alice.files.store_file, "rules.pdf", b"%PDF-1.4\n" + bytes(9000))

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

    window.grab().save(str(out / "main-window.png"))
    for name, dock in window.docks.items():
        dock.widget().grab().save(str(out / f"pane-{name.lower().replace(' ', '-')}.png"))
    window.conversations.setCurrentWidget(view)
    await settle(0.5)
    window.conversations.grab().save(str(out / "topic-chat.png"))
    window.conversations.setCurrentWidget(direct)
    await settle(0.5)
    window.conversations.grab().save(str(out / "direct-messages.png"))
    print(f"screenshots written to {out}")
    for rt in others:
        rt.stop()
    window.close()
    app.shutdown()


def _add_contact(peer, peer_id: str):
    async def add():
        return peer.add_peers([peer_id])

    return add


def main() -> None:
    from core.libp2p_compat import quiet_library_logging

    quiet_library_logging()
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    qt = QApplication(sys.argv[:1])
    loop = qasync.QEventLoop(qt)
    asyncio.set_event_loop(loop)
    with loop:
        loop.run_until_complete(scene(out))


if __name__ == "__main__":
    main()
