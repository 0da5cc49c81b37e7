"""The main window: dockable panes around the conversation area, wired to the core through
the bridge. Slots run on the GUI thread; anything slow is awaited as a core call."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QWidget,
)

from core import events as ev

from .bridge import CoreBridge
from .chat import ChatMessage, ConversationView, is_file_notice, render
from .files_controller import FilesController
from .files_pane import FilesPane
from .logview import LogView
from .monitor_pane import MonitorPane
from .peers_pane import PeersModel, PeersPane, short_id
from .topics_pane import TopicsPane

log = logging.getLogger(__name__)

DEFAULT_PROTOCOL = "/chat/1.0.0"
INFO_INTERVAL_MS = 2000


class MainWindow(QMainWindow):
    notify = Signal(str, str)
    """(title, text) for a desktop notification; the tray shows it if enabled."""
    stateChanged = Signal(str)
    """The connection state as the status bar shows it (for the tray's tooltip)."""

    def __init__(self, bridge: CoreBridge, data_dir: Path, log_view: LogView) -> None:
        super().__init__()
        self.bridge = bridge
        self.data_dir = data_dir
        self.protocol = DEFAULT_PROTOCOL
        self.peer_id = ""
        self.info: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.setWindowTitle("Peerdesk")
        self.resize(1200, 780)

        self.peers_model = PeersModel()
        self.peers = PeersPane(self.peers_model)
        self.topics = TopicsPane()
        self.monitor = MonitorPane()
        self.files_pane = FilesPane()
        self.log_view = log_view
        self.conversations = QTabWidget()
        self.conversations.setTabsClosable(True)
        self.conversations.tabCloseRequested.connect(self._close_tab)
        self.conversations.currentChanged.connect(self._tab_changed)
        placeholder = QLabel("Join a topic or double-click a peer to start a conversation.")
        placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.conversations.addTab(placeholder, "Welcome")
        self.setCentralWidget(self.conversations)

        self.docks: dict[str, QDockWidget] = {}
        self._dock("Peers", self.peers, Qt.DockWidgetArea.LeftDockWidgetArea)
        self._dock("Topics", self.topics, Qt.DockWidgetArea.LeftDockWidgetArea)
        self._dock("Files", self.files_pane, Qt.DockWidgetArea.RightDockWidgetArea)
        self._dock("Topic monitor", self.monitor, Qt.DockWidgetArea.BottomDockWidgetArea)
        self._dock("Log", self.log_view, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.tabifyDockWidget(self.docks["Topic monitor"], self.docks["Log"])
        self.docks["Topic monitor"].raise_()

        self.state_label = QLabel("Starting…")
        self.statusBar().addPermanentWidget(self.state_label)
        self._menus()

        self.peers.openChat.connect(self.open_direct)
        self.peers.connectRequested.connect(self.connect_to)
        self.peers.addContacts.connect(lambda e: self._run(self._contacts(e, add=True)))
        self.peers.removeContacts.connect(lambda e: self._run(self._contacts(e, add=False)))
        self.topics.joinRequested.connect(self.join_topic)
        self.topics.leaveRequested.connect(self.leave_topic)
        self.topics.openTopic.connect(self.open_topic)
        self.monitor.monitorRequested.connect(
            lambda t: self.bridge.call_soon(self.bridge.peer.monitor, t)
        )
        self.monitor.unmonitorRequested.connect(
            lambda t: self.bridge.call_soon(self.bridge.peer.stop_monitor, t)
        )

        self.files = FilesController(
            self.files_pane,
            bridge,
            self,
            self._run,
            lambda title, text: self.notify.emit(title, text),
        )
        bridge.started.connect(self._on_started)
        bridge.failed.connect(self._on_failed)
        bridge.event.connect(self._on_event)
        self.info_timer = QTimer(self)
        self.info_timer.setInterval(INFO_INTERVAL_MS)
        self.info_timer.timeout.connect(self.refresh)
        self.tick_timer = QTimer(self)
        self.tick_timer.setInterval(1000)
        self.tick_timer.timeout.connect(self.monitor.tick)
        self.tick_timer.start()
        self._restore_layout()

    # -- layout -------------------------------------------------------------------------------

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> None:
        dock = QDockWidget(title, self)
        dock.setObjectName(title.replace(" ", "_"))
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        self.docks[title] = dock

    def _menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.settings_action = QAction("&Settings…", self)
        self.settings_action.setShortcut(QKeySequence.StandardKey.Preferences)
        file_menu.addAction(self.settings_action)
        protocol = QAction("Direct message &protocol…", self)
        protocol.triggered.connect(self._choose_protocol)
        file_menu.addAction(protocol)
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        view = self.menuBar().addMenu("&View")
        for dock in self.docks.values():
            view.addAction(dock.toggleViewAction())

    def _settings(self) -> QSettings:
        return QSettings(str(self.data_dir / "window.ini"), QSettings.Format.IniFormat)

    def _restore_layout(self) -> None:
        self.resizeDocks(
            [self.docks["Peers"], self.docks["Topics"]], [330, 260], Qt.Orientation.Vertical
        )
        settings = self._settings()
        geometry, state = settings.value("geometry"), settings.value("state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        if isinstance(state, QByteArray):
            self.restoreState(state)

    def save_layout(self) -> None:
        settings = self._settings()
        settings.setValue("geometry", self.saveGeometry())
        settings.setValue("state", self.saveState())
        settings.sync()

    # -- core state ---------------------------------------------------------------------------

    def _on_started(self, peer: Any) -> None:
        self.peer_id = str(peer.peer_id)
        self.statusBar().showMessage(f"Peer {short_id(self.peer_id)} started", 5000)
        self.files.own_id = self.peer_id
        self.info_timer.start()
        self.refresh()
        self.files.refresh()

    def _on_failed(self, message: str) -> None:
        self.state_label.setText("Offline — the peer is not running")
        QMessageBox.critical(self, "Peerdesk", message)

    def refresh(self) -> None:
        if self.bridge.peer is not None and self.bridge.runtime is not None:
            self._run(self._refresh())

    async def _refresh(self) -> None:
        async def snapshot() -> dict[str, Any]:
            peer = self.bridge.peer
            info = peer.info()
            info["topic_members"] = {t: peer.list_peers(t) for t in peer.topics.subscribed}
            info["monitor_members"] = {
                t: dict(stats.members)
                for t in peer.topics.monitored
                if (stats := peer.topics.stats(t)) is not None
            }
            return info

        info = await self.bridge.call(snapshot)
        self.info = info
        self.peers.set_identity(info["peerid"], info["addrs"])
        self.peers_model.update_from_info(info)
        aliases = {r.peer: r.alias for r in self.peers_model.rows}
        for topic, members in info["topic_members"].items():
            self.topics.set_members(topic, members, aliases)
        self.monitor.alias = aliases
        self.files_pane.set_peers(
            [
                (r.peer, f"{r.alias}  {short_id(r.peer)}")
                for r in self.peers_model.rows
                if r.connected
            ]
        )
        for topic, members in info["monitor_members"].items():
            self.monitor.set_members(topic, members)
        online = len(info["connections"])
        dht = "DHT ready" if info["dht_ready"] else "DHT bootstrapping"
        lan = "LAN discovery on" if info["mdns"] else "LAN discovery off"
        state = f"Online — {online} peer{'s' if online != 1 else ''} · {dht} · {lan}"
        if state != self.state_label.text():
            self.state_label.setText(state)
            self.stateChanged.emit(state)

    def _on_event(self, event: Any) -> None:
        self.files.on_event(event)
        if isinstance(event, ev.TopicData):
            self._topic_message(event)
        elif isinstance(event, ev.PeerData):
            self._direct_message(event)
        elif isinstance(event, ev.PeerChange):
            self.monitor.on_change(event.topic, event.peer, event.joined)
        elif isinstance(event, ev.PeerConnected | ev.PeerDisconnected):
            self.refresh()
        elif isinstance(event, ev.CoreError):
            self.statusBar().showMessage(event.message, 10000)

    # -- conversations ------------------------------------------------------------------------

    def _conversation(self, key: str) -> ConversationView | None:
        for i in range(self.conversations.count()):
            widget = self.conversations.widget(i)
            if isinstance(widget, ConversationView) and widget.key == key:
                return widget
        return None

    def _open(
        self, key: str, title: str, tab: str, *, direct: bool, focus: bool = True
    ) -> ConversationView:
        view = self._conversation(key)
        if view is None:
            view = ConversationView(title, key, direct=direct)
            view.submitted.connect(lambda value, row, v=view: self._send(v, value, row))
            self.conversations.addTab(view, tab)
        if focus:
            self.conversations.setCurrentWidget(view)
        return view

    def open_topic(self, topic: str, focus: bool = True) -> ConversationView:
        return self._open(
            f"topic:{topic}", f"Topic <b>{topic}</b>", f"# {topic}", direct=False, focus=focus
        )

    def open_direct(self, peer: str, focus: bool = True) -> ConversationView:
        alias = self.peers_model.alias(peer)
        view = self._open(
            f"peer:{peer}",
            f"Direct messages with <b>{alias}</b> <small>{peer} on {self.protocol}</small>",
            f"@ {alias}",
            direct=True,
            focus=focus,
        )
        if focus:
            self.peers_model.clear_unread(peer)
        return view

    def _tab_changed(self, index: int) -> None:
        widget = self.conversations.widget(index)
        if isinstance(widget, ConversationView):
            kind, _, name = widget.key.partition(":")
            if kind == "topic":
                self.topics.clear_unread(name)
            else:
                self.peers_model.clear_unread(name)

    def _close_tab(self, index: int) -> None:
        if isinstance(self.conversations.widget(index), ConversationView):
            self.conversations.removeTab(index)

    def _topic_message(self, event: ev.TopicData) -> None:
        notice = is_file_notice(event.data)
        self.monitor.on_message(
            event.topic, event.peer, "(changed their files)" if notice else render(event.data)
        )
        if event.peer == self.peer_id or notice:
            return  # our own publication coming back (shown when sent), or a system notice
        view = self.open_topic(event.topic, focus=False)
        view.model.append(
            ChatMessage(event.peer, self.peers_model.alias(event.peer), event.data, time.time())
        )
        if self.conversations.currentWidget() is not view:
            self.topics.count_unread(event.topic)

    def _direct_message(self, event: ev.PeerData) -> None:
        view = self.open_direct(event.peer, focus=False)
        alias = self.peers_model.alias(event.peer)
        view.model.append(ChatMessage(event.peer, alias, event.data, time.time()))
        if self.conversations.currentWidget() is not view or not self.isActiveWindow():
            self.peers_model.add_unread(event.peer)
            self.notify.emit(f"Message from {alias}", render(event.data))

    def _send(self, view: ConversationView, value: Any, row: int) -> None:
        kind, _, name = view.key.partition(":")
        if kind == "topic":
            self._run(
                self.bridge.call(self.bridge.peer.publish, name, value), what=f"publish to {name}"
            )
        else:
            self._run(self._send_direct(view, name, value, row))

    async def _send_direct(self, view: ConversationView, peer: str, value: Any, row: int) -> None:
        from core.direct import DeliveryFailed

        try:
            msg_id = await self.bridge.call(self.bridge.peer.send, peer, self.protocol, value)
            view.model.set_status(row, "delivered", msg_id)
        except (DeliveryFailed, ValueError, RuntimeError) as exc:
            view.model.set_status(row, "failed")
            self.statusBar().showMessage(f"Not delivered: {exc}", 10000)

    # -- commands -----------------------------------------------------------------------------

    def join_topic(self, topic: str) -> None:
        self.topics.add_topic(topic)
        self.open_topic(topic)
        self._run(self.bridge.call(self.bridge.peer.subscribe, topic), what=f"join {topic}")

    def leave_topic(self, topic: str) -> None:
        self.topics.remove_topic(topic)
        view = self._conversation(f"topic:{topic}")
        if view is not None:
            self.conversations.removeTab(self.conversations.indexOf(view))
        self._run(self.bridge.call(self.bridge.peer.unsubscribe, topic), what=f"leave {topic}")

    def connect_to(self, text: str) -> None:
        async def go() -> None:
            peer = self.bridge.peer
            if text.startswith("/"):
                await self.bridge.call(peer.connect, text)
            else:
                await self._contacts([text], add=True)
            self.statusBar().showMessage(f"Connected to {short_id(text.split('/')[-1])}", 5000)
            self.refresh()

        self._run(go(), what=f"connect to {text}")

    async def _contacts(self, entries: list[str], *, add: bool) -> None:
        peer = self.bridge.peer

        async def change() -> dict[str, str]:
            return peer.add_peers(entries) if add else peer.remove_peers(entries)

        errors = await self.bridge.call(change)
        if errors:
            QMessageBox.warning(self, "Contacts", "\n".join(f"{k}: {v}" for k, v in errors.items()))
        self.refresh()

    def _choose_protocol(self) -> None:
        text, ok = QInputDialog.getText(self, "Direct messages", "Protocol id:", text=self.protocol)
        if ok and text.strip():
            self.set_protocol(text.strip())

    def set_protocol(self, protocol: str) -> None:
        """Receive on the new protocol too; messages go out on it from now on."""
        self.protocol = protocol
        if self.bridge.peer is not None:
            self.bridge.call_soon(self.bridge.peer.start_protocol, protocol)

    def _run(self, aw: Awaitable[Any], what: str = "") -> None:
        """Run a core call; a failure becomes a readable message, never a crash."""

        async def guarded() -> None:
            try:
                await aw
            except asyncio.CancelledError:
                self.statusBar().showMessage(f"Cancelled: {what}" if what else "Cancelled", 5000)
            except Exception as exc:
                log.warning("%s failed: %s", what or "operation", exc)
                self.statusBar().showMessage(
                    f"Could not {what}: {exc}" if what else str(exc), 10000
                )

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_layout()
        self.info_timer.stop()
        super().closeEvent(event)
