"""The real window over a real core, with a second peer on loopback, offscreen.

One qasync loop serves the whole session (qt-notes.md: stopping a loop in one test would set
Qt's quit flag and make every later wait return at once)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6")

import qasync
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from core import events as ev
from core.peer import new_peer
from core.profile import Profile
from core.runtime import CoreRuntime
from core.settings import Settings

from .conftest import fast_config

WAIT_MS = 20_000


@pytest.fixture(scope="session")
def qloop(qapp: Any) -> Iterator[asyncio.AbstractEventLoop]:
    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.set_event_loop(loop)
    yield loop


class OtherPeer:
    """A second peer on its own core thread, as another machine would be."""

    def __init__(self, tmp: Path) -> None:
        self.events: list[Any] = []
        self.lock = threading.Lock()
        self.runtime = CoreRuntime(new_peer(fast_config(files_dir=str(tmp)), self._sink).run)
        self.runtime.start()
        assert self.runtime.ready.wait(15) and self.runtime.error is None
        self.peer = self.runtime.value

    def _sink(self, event: Any) -> None:
        with self.lock:
            self.events.append(event)

    def call(self, fn: Any, *args: Any) -> Any:
        return self.runtime.submit(fn, *args).result(20)

    def sync(self, fn: Any, *args: Any) -> Any:
        async def run() -> Any:
            return fn(*args)

        return self.call(run)

    @property
    def addr(self) -> str:
        return self.peer.listen_addrs()[0]

    @property
    def id(self) -> str:
        return str(self.peer.peer_id)


@pytest.fixture
def other(tmp_path: Path) -> Iterator[OtherPeer]:
    peer = OtherPeer(tmp_path / "other")
    yield peer
    peer.runtime.stop()


@pytest.fixture
def app(qtbot: Any, qloop: Any, tmp_path: Path) -> Iterator[Any]:
    from gui.app import App

    data = tmp_path / "me"
    Profile.open(data).save_settings(
        Settings(listen_addrs=["/ip4/127.0.0.1/tcp/0"], bootstrap=[], mdns=False)
    )
    peerdesk = App(data)
    qtbot.addWidget(peerdesk.window)
    peerdesk.window.show()
    with qtbot.waitSignal(peerdesk.bridge.started, timeout=WAIT_MS):
        peerdesk.start_core()
    yield peerdesk
    peerdesk.window.close()
    peerdesk.shutdown()


def my_addr(app: Any) -> str:
    return app.bridge.peer.listen_addrs()[0]


def test_window_shows_state_and_identity(app: Any, qtbot: Any) -> None:
    window = app.window
    qtbot.waitUntil(lambda: window.state_label.text().startswith("Online"), timeout=WAIT_MS)
    assert "LAN discovery off" in window.state_label.text()
    assert window.peers.own_id == str(app.bridge.peer.peer_id)
    assert set(window.docks) == {"Peers", "Topics", "Files", "Topic monitor", "Log"}


def test_join_topic_and_see_the_other_peers_message(app: Any, other: OtherPeer, qtbot: Any) -> None:
    window = app.window
    other.call(other.peer.connect, my_addr(app))
    window.topics.topic_input.setText("lobby")
    window.topics._join()
    other.call(other.peer.topics.subscribe, "lobby", 5.0)
    qtbot.waitUntil(lambda: other.id in window.topics.members.get("lobby", []), timeout=WAIT_MS)
    other.call(other.peer.publish, "lobby", {"text": "hello desktop"})
    view = window._conversation("topic:lobby")
    assert view is not None
    qtbot.waitUntil(lambda: any(m.sender == other.id for m in view.model.messages), timeout=WAIT_MS)
    msg = next(m for m in view.model.messages if m.sender == other.id)
    assert "hello desktop" in view.model.item(view.model.messages.index(msg)).text()

    view.input.setText("hi back")
    view._submit()
    qtbot.waitUntil(
        lambda: any(
            isinstance(e, ev.TopicData) and e.data == "hi back" for e in list(other.events)
        ),
        timeout=WAIT_MS,
    )


def test_monitor_shows_join_and_leave(app: Any, other: OtherPeer, qtbot: Any) -> None:
    window = app.window
    other.call(other.peer.connect, my_addr(app))
    window.monitor.topic_input.setText("watched")
    window.monitor._add()
    other.call(other.peer.topics.subscribe, "watched", 0.5)
    kinds = lambda: [(e.kind, e.peer) for e in window.monitor.timeline.rows]  # noqa: E731
    qtbot.waitUntil(lambda: ("join", other.id) in kinds(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: other.id in window.monitor.members.get("watched", {}), timeout=WAIT_MS)
    other.call(other.peer.unsubscribe, "watched")
    qtbot.waitUntil(lambda: ("leave", other.id) in kinds(), timeout=WAIT_MS)


def test_direct_message_is_marked_delivered(app: Any, other: OtherPeer, qtbot: Any) -> None:
    window = app.window
    other.sync(other.peer.start_protocol, "/chat/1.0.0")
    other.call(other.peer.connect, my_addr(app))
    view = window.open_direct(other.id)
    view.input.setText('{"text": "psst"}')
    view._submit()
    qtbot.waitUntil(lambda: view.model.statuses() == ["delivered"], timeout=WAIT_MS)
    assert any(
        isinstance(e, ev.PeerData) and e.data == {"text": "psst"} for e in list(other.events)
    )

    # and the other way: an incoming message opens the conversation with an unread mark
    other.call(other.peer.send, str(app.bridge.peer.peer_id), "/chat/1.0.0", "reply")
    qtbot.waitUntil(lambda: any(m.value == "reply" for m in view.model.messages), timeout=WAIT_MS)


def test_dropped_file_appears_in_the_tree_with_its_cid(
    app: Any, other: OtherPeer, qtbot: Any, tmp_path: Path
) -> None:
    window = app.window
    local = tmp_path / "hello.txt"
    local.write_bytes(b"hello world\n")
    folder = tmp_path / "album"
    (folder / "inner").mkdir(parents=True)
    (folder / "inner" / "x.bin").write_bytes(b"x")

    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(local)), QUrl.fromLocalFile(str(folder))])
    view = window.files_pane.view
    drop = QDropEvent(
        QPointF(5, 5),
        Qt.DropAction.CopyAction,
        data,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    view.dropEvent(drop)
    model = window.files_pane.model
    qtbot.waitUntil(lambda: model.index_of("album/inner/x.bin").isValid(), timeout=WAIT_MS)
    index = model.index_of("hello.txt")
    assert index.isValid()
    assert model.node(index).cid == "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby"
    assert model.node(model.index_of("album/inner/x.bin")).cid == (
        "bafybeiczcctdlznuiia25cbxs3bmdsinqecjoqocn43kvxcy4u5fgouucu"
    )

    # The other peer browses our tree, and we browse theirs (read-only).
    other.call(other.peer.connect, my_addr(app))
    other.call(other.peer.files.store_file, "theirs.txt", b"from the other peer")
    window.refresh()
    qtbot.waitUntil(lambda: window.files_pane.source.findData(other.id) >= 0, timeout=WAIT_MS)
    window.files_pane.source.setCurrentIndex(window.files_pane.source.findData(other.id))
    qtbot.waitUntil(lambda: model.index_of("theirs.txt").isValid(), timeout=WAIT_MS)
    assert model.read_only and not window.files_pane.delete.isEnabled()


def test_settings_are_saved_and_reloaded(app: Any, qtbot: Any) -> None:
    from gui.settings_dialog import SettingsDialog

    dialog = SettingsDialog(app.data_dir, app.window)
    dialog.port.setValue(4711)
    dialog.mdns.setChecked(True)
    dialog.notify_topic.setText("files")
    dialog.bootstrap.setPlainText(
        "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
    )
    dialog.accept()
    assert dialog.needs_restart
    again = SettingsDialog(app.data_dir, app.window)
    assert again.port.value() == 4711 and again.mdns.isChecked()
    assert again.notify_topic.text() == "files"
    assert Profile.open(app.data_dir).load_settings().listen_port == 4711
    again.reject()


def test_layout_is_remembered(app: Any, qtbot: Any) -> None:
    app.window.docks["Log"].hide()
    app.window.save_layout()
    from gui.logview import LogView, QtLogHandler
    from gui.mainwindow import MainWindow

    second = MainWindow(app.bridge, app.data_dir, LogView(QtLogHandler()))
    qtbot.addWidget(second)
    assert not second.docks["Log"].isVisibleTo(second)
    assert second.docks["Peers"].isVisibleTo(second)


def test_ipfs_link_is_fetched_and_offered(app: Any, other: OtherPeer, qtbot: Any) -> None:
    from PySide6.QtWidgets import QFileDialog

    other.call(other.peer.connect, my_addr(app))
    cid, _ = other.call(other.peer.files.store_file, "shared.txt", b"from a link\n")
    app.open_link(f"ipfs://{cid}")
    files = app.window.files
    qtbot.waitUntil(lambda: files.last_got is not None, timeout=WAIT_MS)
    assert files.last_got.success and files.last_got.cid == cid
    assert isinstance(files.dialog, QFileDialog) and files.dialog.isVisible()
    files.dialog.reject()


def test_a_second_start_forwards_its_link_to_the_running_app(app: Any, qtbot: Any) -> None:
    from gui.links import LinkServer, forward

    received: list[str] = []
    server = LinkServer(app.data_dir / "other-profile", received.append)
    try:
        assert forward(app.data_dir / "other-profile", "ipfs://bafyexample")
        qtbot.waitUntil(lambda: received == ["ipfs://bafyexample"], timeout=WAIT_MS)
        assert not forward(app.data_dir / "nobody-listens", "ipfs://x")
    finally:
        server.server.close()


def test_restart_with_an_imported_identity(app: Any, qtbot: Any) -> None:
    from core import identity

    old_runtime = app.bridge.runtime
    key = identity.generate()
    Profile.open(app.data_dir).replace_identity(key)
    with qtbot.waitSignal(app.bridge.started, timeout=WAIT_MS):
        app.restart_core()
    assert not old_runtime.running
    assert str(app.bridge.peer.peer_id) == str(identity.peer_id(key))
    qtbot.waitUntil(lambda: app.window.peers.own_id == str(identity.peer_id(key)), timeout=WAIT_MS)
