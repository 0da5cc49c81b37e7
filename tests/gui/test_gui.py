"""The real window over a real core, with a second peer on loopback, offscreen.

One qasync loop serves the whole session (qt-notes.md: stopping a loop in one test would set
Qt's quit flag and make every later wait return at once)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6")

import qasync
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from core import events as ev
from core.peer import new_peer
from core.profile.folder import Profile
from core.profile.settings import Settings
from core.runtime import CoreRuntime
from tests.conftest import fast_config

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
    assert set(window.docks) == {"Peers", "Topics", "Files", "Topic monitor", "Transfers", "Log"}


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
    from gui.dialogs.settings import SettingsDialog

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
    from gui.mainwindow import MainWindow
    from gui.panes.log import LogView, QtLogHandler

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


def test_a_get_by_cid_from_a_real_peer_learns_its_size_and_counts_its_bytes(
    app: Any, other: OtherPeer, qtbot: Any, tmp_path: Path
) -> None:
    import os

    other.call(other.peer.connect, my_addr(app))
    content = os.urandom(3 * 1048576 + 5)  # 13 leaves: several reports
    cid, _ = other.call(other.peer.files.store_file, "big.bin", content)
    files, model = app.window.files, app.window.transfers_model
    seen: list[tuple[int, int]] = []
    model.dataChanged.connect(
        lambda *_: seen.append((model.rows[0].done, model.rows[0].total)) if model.rows else None
    )
    files.get_by_cid(cid, "")

    def finished() -> bool:
        return getattr(model.newest("Get", cid), "state", "") == "done"

    qtbot.waitUntil(finished, timeout=WAIT_MS)
    job = model.newest("Get", cid)
    assert files.last_got is not None and files.last_got.success
    assert job.done == job.total == len(content)
    assert any(0 < done < len(content) and total == len(content) for done, total in seen)
    # Saved from the fetched blocks into the file the user picks, listed as a download.
    assert "3.0 MiB" in files.dialog.windowTitle()
    dest = tmp_path / "got.bin"
    files.dialog.fileSelected.emit(str(dest))  # as the dialog does when the user picks it
    files.dialog.reject()

    def written() -> bool:
        return getattr(model.newest("Download", dest.name), "state", "") == "done"

    qtbot.waitUntil(written, timeout=WAIT_MS)
    assert dest.read_bytes() == content
    assert model.newest("Download", dest.name).total == len(content)


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
    from core.profile import identity

    old_runtime = app.bridge.runtime
    key = identity.generate()
    Profile.open(app.data_dir).replace_identity(key)
    with qtbot.waitSignal(app.bridge.started, timeout=WAIT_MS):
        app.restart_core()
    assert not old_runtime.running
    assert str(app.bridge.peer.peer_id) == str(identity.peer_id(key))
    qtbot.waitUntil(lambda: app.window.peers.own_id == str(identity.peer_id(key)), timeout=WAIT_MS)


# -- round 2: what a restart keeps, reading and writing, the small things ------------------


def _restart(app: Any, qtbot: Any) -> Any:
    from gui.app import App

    app.window.close()
    app.shutdown()
    again = App(app.data_dir)
    qtbot.addWidget(again.window)
    again.window.show()
    with qtbot.waitSignal(again.bridge.started, timeout=WAIT_MS):
        again.start_core()
    return again


def test_history_topics_tabs_and_monitors_survive_a_restart(
    app: Any, other: OtherPeer, qtbot: Any
) -> None:
    window = app.window
    other.sync(other.peer.start_protocol, "/chat/1.0.0")
    other.call(other.peer.connect, my_addr(app))
    window.join_topic("lobby")
    window.monitor.topic_input.setText("watched")
    window.monitor._add()
    other.call(other.peer.topics.subscribe, "lobby", 5.0)
    qtbot.waitUntil(lambda: other.id in window.topics.members.get("lobby", []), timeout=WAIT_MS)
    other.call(other.peer.publish, "lobby", {"text": "before the restart"})
    topic = window._conversation("topic:lobby")
    qtbot.waitUntil(lambda: len(topic.model.messages) == 1, timeout=WAIT_MS)
    dm = window.open_direct(other.id)
    dm.input.setText("a direct one")
    dm._submit()
    qtbot.waitUntil(lambda: dm.model.statuses() == ["delivered"], timeout=WAIT_MS)
    window._close_tab(window.conversations.indexOf(dm))  # closing a tab keeps its history

    again = _restart(app, qtbot)
    try:
        w2 = again.window
        view = w2._conversation("topic:lobby")
        assert view is not None and w2._conversation(f"peer:{other.id}") is None
        assert [m.value for m in view.model.messages] == [{"text": "before the restart"}]
        assert w2.topics.topic_names() == ["lobby"] and w2.monitor.topics == ["watched"]
        qtbot.waitUntil(lambda: "lobby" in again.bridge.peer.topics.subscribed, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: "watched" in again.bridge.peer.topics.monitored, timeout=WAIT_MS)
        reopened = w2.open_direct(other.id)
        [msg] = reopened.model.messages
        assert msg.value == "a direct one" and msg.mine and msg.status == "delivered"
        assert [m.value for m in w2.history.search("RESTART")] == [{"text": "before the restart"}]
    finally:
        again.window.close()
        again.shutdown()


def test_a_topic_message_nobody_received_is_marked(app: Any, qtbot: Any) -> None:
    window = app.window
    window.join_topic("empty-room")
    view = window._conversation("topic:empty-room")
    view.input.setText("anyone?")
    view._submit()
    qtbot.waitUntil(lambda: view.model.messages[0].status == "unheard", timeout=WAIT_MS)
    assert "no one received this" in view.model.item(0).text()


def test_members_are_right_after_leave_and_join(app: Any, other: OtherPeer, qtbot: Any) -> None:
    window = app.window
    other.call(other.peer.connect, my_addr(app))
    other.call(other.peer.topics.subscribe, "room", 5.0)
    window.join_topic("room")
    qtbot.waitUntil(lambda: other.id in window.topics.members.get("room", []), timeout=WAIT_MS)
    window.leave_topic("room")
    assert "room" not in window.topics.members
    window.join_topic("room")
    qtbot.waitUntil(lambda: other.id in window.topics.members.get("room", []), timeout=WAIT_MS)
    assert window.topics._item("room").text().startswith("room   (1 peer)")


def test_names_are_stable_and_nicknames_kept(app: Any, qtbot: Any) -> None:
    from gui.panes.peers import PeersModel

    peer = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
    assert (
        PeersModel().alias(peer) == PeersModel().alias(peer) == app.window.peers_model.alias(peer)
    )
    assert PeersModel().alias(peer) != PeersModel().alias(peer[:-1] + "B")
    app.window._set_nickname(peer, "Grandma")
    again = _restart(app, qtbot)
    try:
        assert again.window.peers_model.alias(peer) == "Grandma"
    finally:
        again.window.close()
        again.shutdown()


def test_multi_line_input_enter_sends_shift_enter_breaks(app: Any, qtbot: Any) -> None:
    view = app.window.open_topic("lines", focus=True)
    view.input.setFocus()
    qtbot.keyClicks(view.input, "first")
    qtbot.keyClick(view.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(view.input, "second")
    assert view.model.messages == []
    qtbot.keyClick(view.input, Qt.Key.Key_Return)
    assert [m.value for m in view.model.messages] == ["first\nsecond"]
    assert view.input.text() == "" and view.view.wordWrap()


def test_small_things(app: Any, qtbot: Any) -> None:
    import logging

    window = app.window
    # the Log pane shows INFO without -v
    logging.getLogger("core.test").info("an info line for the pane")
    qtbot.waitUntil(
        lambda: "an info line for the pane" in window.log_view.text.toPlainText(), timeout=WAIT_MS
    )
    # no bootstrap peers: the DHT is not "bootstrapping" forever
    qtbot.waitUntil(lambda: "no bootstrap peers" in window.state_label.text(), timeout=WAIT_MS)
    # an empty monitor has no "peak 1 msg/s"
    window.monitor.add_topic("quiet")
    window.monitor.tick()
    assert max(window.monitor.sparkline.values, default=0) == 0
    # the Welcome tab closes
    assert window.conversations.tabText(0) == "Welcome"
    window._close_tab(0)
    assert all(
        window.conversations.tabText(i) != "Welcome" for i in range(window.conversations.count())
    )
    # a word that is no peer id is not "Connected to"
    window.connect_to("hello")
    assert "neither a multiaddr" in window.statusBar().currentMessage()
    # Reset layout brings hidden panes back
    window.docks["Peers"].hide()
    window.reset_layout()
    assert window.docks["Peers"].isVisibleTo(window)


def test_new_folder_is_listed_at_once(app: Any, qtbot: Any) -> None:
    files = app.window.files
    files.mkdir("fresh")
    qtbot.waitUntil(lambda: files.pane.model.index_of("fresh").isValid(), timeout=WAIT_MS)


def test_desktop_accepts_no_bootstrap_and_no_mdns() -> None:
    from gui.cli import parse

    args = parse(["--no-bootstrap", "--no-mdns"])
    assert args.command == "" and args.no_bootstrap and args.no_mdns


def test_get_by_cid_shows_progress_and_can_be_cancelled(
    app: Any, other: OtherPeer, qtbot: Any
) -> None:
    other.call(other.peer.connect, my_addr(app))  # asked, but it does not have the CID
    files = app.window.files
    nobody_has = "bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    files.get_by_cid(nobody_has, "")
    qtbot.waitUntil(lambda: len(files.pane.progress) == 1, timeout=WAIT_MS)
    [row] = files.pane.progress.values()
    row.cancelled.emit()
    qtbot.waitUntil(lambda: not files.pane.progress, timeout=WAIT_MS)
    qtbot.waitUntil(
        lambda: app.window.statusBar().currentMessage().startswith("Cancelled"), timeout=WAIT_MS
    )
    assert files.last_got is None  # stopped, not answered as a failure after its timeout


def test_show_from_the_tray_keeps_the_window_maximized(app: Any, qtbot: Any) -> None:
    window = app.window
    window.showMaximized()
    qtbot.waitUntil(window.isMaximized, timeout=WAIT_MS)
    window.toggle_window()
    assert not window.isVisible()
    window.toggle_window()
    assert window.isVisible() and window.isMaximized()


def test_topic_graph_shows_mesh_links_joins_and_messages(
    app: Any, other: OtherPeer, qtbot: Any
) -> None:
    window = app.window
    other.call(other.peer.connect, my_addr(app))
    window.join_topic("graph")
    window.monitor.topic_input.setText("graph")
    window.monitor._add()
    graph = window.monitor.graph
    other.call(other.peer.topics.subscribe, "graph", 5.0)
    qtbot.waitUntil(lambda: other.id in graph.members, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: other.id in graph.mesh, timeout=WAIT_MS)  # grafted by a heartbeat
    other.call(other.peer.publish, "graph", "hello graph")
    qtbot.waitUntil(lambda: any(f.peer == other.id for f in graph.flows), timeout=WAIT_MS)
    assert other.id in graph.positions()
    graph.grab()  # paints with links, a flow and labels without error
    other.call(other.peer.unsubscribe, "graph")
    qtbot.waitUntil(lambda: graph.pulses.get(other.id, ("",))[0] == "leave", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: other.id not in graph.members, timeout=WAIT_MS)


def test_close_to_tray_hides_and_quit_closes(app: Any, qtbot: Any) -> None:
    from PySide6.QtWidgets import QApplication

    window = app.window
    window.close_to_tray = True
    last_closed: list[bool] = []
    QApplication.instance().lastWindowClosed.connect(lambda: last_closed.append(True))
    window.close()
    assert not window.isVisible() and not last_closed  # still running, in the tray
    window.show_window()
    assert window.isVisible()
    window.quit()
    assert not window.isVisible()
    assert Profile.open(app.data_dir).load_settings().close_to_tray is False  # the default


def test_find_in_history_lists_matches_and_opens_their_conversation(app: Any, qtbot: Any) -> None:
    from gui.dialogs.search import SearchDialog

    window = app.window
    peer = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
    window.history.add(f"peer:{peer}", peer, {"text": "the Secret plan"}, 1.0)
    window.history.add("topic:news", "x", "nothing to see", 2.0)
    dialog = SearchDialog(window.history, window.peers_model.alias, window)
    dialog.openConversation.connect(window._open_key)
    dialog.query.setText("secret")
    dialog.search()
    assert dialog.results.count() == 1 and "the Secret plan" in dialog.results.item(0).text()
    dialog._open(dialog.results.item(0))
    assert window.conversations.currentWidget() is window._conversation(f"peer:{peer}")
    dialog.close()


def test_download_folder_setting_is_where_save_dialogs_start(
    app: Any, qtbot: Any, tmp_path: Path
) -> None:
    from gui.dialogs.settings import SettingsDialog

    folder = tmp_path / "dl"
    folder.mkdir()
    dialog = SettingsDialog(app.data_dir, app.window)
    dialog.download_dir.setText(str(folder))
    dialog.accept()
    app.settings = dialog.value()
    app._apply_window_settings()
    assert app.window.files_pane.download_dir() == folder


def test_transfers_list_real_imports_and_downloads_and_the_download_folder(
    app: Any, other: OtherPeer, qtbot: Any, tmp_path: Path
) -> None:
    window = app.window
    local = tmp_path / "payload.bin"
    local.write_bytes(bytes(range(256)) * 4096)  # 1 MiB: several chunks, several reports
    window.files.store_paths("", [local])
    model = window.transfers_model
    qtbot.waitUntil(
        lambda: (
            model.newest("Import", "payload.bin") is not None
            and model.newest("Import", "payload.bin").state == "done"
        ),
        timeout=WAIT_MS,
    )
    job = model.newest("Import", "payload.bin")
    assert job.done == job.total == 1048576

    # A download from the other peer, into the download folder the Transfers pane sets.
    other.call(other.peer.connect, my_addr(app))
    cid, _root = other.call(other.peer.files.store_file, "theirs.bin", b"y" * 300_000)
    folder = tmp_path / "downloads"
    folder.mkdir()
    app.set_download_folder(folder)
    assert Profile.open(app.data_dir).load_settings().download_dir == str(folder)
    assert window.transfers.folder.text() == f"Downloads: {folder}"
    dest = window.files_pane.download_dir() / "theirs.bin"
    window.files.save(cid, str(dest), other.id)
    qtbot.waitUntil(
        lambda: (
            model.newest("Download", dest.name) is not None
            and model.newest("Download", dest.name).state == "done"
        ),
        timeout=WAIT_MS,
    )
    assert dest.read_bytes() == b"y" * 300_000
    assert model.newest("Download", dest.name).done == 300_000  # what was written, in the end


def test_finished_transfers_survive_a_restart_of_the_app(
    app: Any, qtbot: Any, tmp_path: Path
) -> None:
    local = tmp_path / "kept.bin"
    local.write_bytes(b"k" * 300_000)
    app.window.files.store_paths("", [local])
    model = app.window.transfers_model
    qtbot.waitUntil(
        lambda: getattr(model.newest("Import", "kept.bin"), "state", "") == "done",
        timeout=WAIT_MS,
    )
    again = _restart(app, qtbot)
    try:
        job = again.window.transfers_model.newest("Import", "kept.bin")
        assert job is not None and (job.state, job.done, job.total) == ("done", 300_000, 300_000)
        assert (app.data_dir / "transfers.json").is_file()
    finally:
        again.window.close()
        again.shutdown()


def test_each_side_sees_the_name_the_other_chose(app: Any, other: OtherPeer, qtbot: Any) -> None:
    profile = Profile.open(app.data_dir)
    profile.save_settings(replace(profile.load_settings(), display_name="Ada"))
    again = _restart(app, qtbot)
    try:
        other.peer.config.display_name = "Grace"
        other.call(other.peer.connect, again.bridge.peer.listen_addrs()[0])
        window = again.window
        qtbot.waitUntil(lambda: window.peers_model.alias(other.id) == "Grace", timeout=WAIT_MS)
        me = str(again.bridge.peer.peer_id)

        def theirs() -> str:
            conns = other.sync(other.peer.info)["connections"]
            return next((c["name"] for c in conns if c["peer"] == me), "")

        qtbot.waitUntil(lambda: theirs() == "Ada", timeout=WAIT_MS)
        assert window.peers.me.text().startswith("This peer: Ada · ")
        model = window.peers_model
        row = next(i for i, r in enumerate(model.rows) if r.peer == other.id)
        assert model.data(model.index(row, model.COLUMNS.index("Link"))).startswith("direct")
    finally:
        again.window.close()
        again.shutdown()
