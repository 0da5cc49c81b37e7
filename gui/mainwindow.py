"""The main window: dockable panes around the conversation area, wired to the peer through
a ``PeerClient`` (the bridge; a fake in tests). Slots run on the GUI thread; anything slow is
awaited as a client call.

It fits the screen it is on (from 1024x768 up: no label may widen it, see ``elide.py``), and
keeps what a restart would lose in the profile: conversations in ``history.sqlite`` (with the
joined topics, open tabs, monitored topics and nicknames), the layout in ``window.ini``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QEvent, QPoint, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QGuiApplication, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSizePolicy,
    QTabWidget,
    QWidget,
)

from core import events as ev
from core.profile.history import History
from core.snapshots import NetworkState, PeerIdentity
from gui import geometry, transfer_log
from gui.client import NotDelivered, PeerClient
from gui.models.reachability import reachability_forms, reachability_tooltip
from gui.models.transfers import TransfersModel
from gui.panes.chat import ChatMessage, ConversationView, is_file_notice, render
from gui.panes.files import FilesPane
from gui.panes.files_controller import FilesController
from gui.panes.log import LogView
from gui.panes.monitor import MonitorPane
from gui.panes.peers import PeersModel, PeersPane, short_id
from gui.panes.topics import TopicsPane
from gui.panes.transfers import TransfersPane
from gui.widgets.elide import ElidedLabel

log = logging.getLogger(__name__)

DEFAULT_PROTOCOL = "/chat/1.0.0"
INFO_INTERVAL_MS = 2000
HISTORY_COMMIT_MS = 1000
FIT_RETRY_MS = 100
FIT_TRIES = 10
"""How often, and how many times, a shown window is checked again until it has a frame."""
KEPT_NAMES = 1000
"""Names other peers chose that the profile keeps (the oldest learnt go first)."""
HISTORY_SHOWN = 500
"""Messages of a conversation loaded into its tab when it opens (the rest stay searchable)."""


class MainWindow(QMainWindow):
    notify = Signal(str, str)
    """(title, text) for a desktop notification; the tray shows it if enabled."""
    stateChanged = Signal(str)
    """The connection state as the status bar shows it (for the tray's tooltip)."""

    def __init__(self, client: PeerClient, data_dir: Path, log_view: LogView) -> None:
        super().__init__()
        self.client = client
        self.data_dir = data_dir
        self.protocol = DEFAULT_PROTOCOL
        self.peer_id = ""
        self.state: NetworkState | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._topic_ops: dict[str, asyncio.Future[Any]] = {}
        self._online_at = time.monotonic()
        """When the peer came up (how long reachability has been checked)."""
        self.has_bootstrap = True
        """Whether the peer has DHT bootstrap peers (the app says; without, no "bootstrapping")."""
        self.close_to_tray = False
        """Set by the app when the setting is on and a tray exists to come back from."""
        self._quitting = False
        self.setWindowTitle("Peerdesk")
        self.history = History(data_dir / "history.sqlite")
        self.history_timer = QTimer(self)
        self.history_timer.setInterval(HISTORY_COMMIT_MS)
        self.history_timer.timeout.connect(self.history.commit)
        self.history_timer.start()

        self.peers_model = PeersModel()
        self.peers = PeersPane(self.peers_model)
        self.topics = TopicsPane()
        self.monitor = MonitorPane()
        self.files_pane = FilesPane()
        self.transfers_model = TransfersModel()
        self.transfers_model.restore(transfer_log.load(data_dir))
        self._transfers_ended = False
        self.transfers_model.endedChanged.connect(self._note_transfers_ended)
        self.history_timer.timeout.connect(self.save_transfers)
        self.transfers = TransfersPane(self.transfers_model)
        self.log_view = log_view
        self.conversations = QTabWidget()
        self.conversations.setTabsClosable(True)
        self.conversations.tabCloseRequested.connect(self._close_tab)
        self.conversations.currentChanged.connect(self._tab_changed)
        placeholder = QLabel("Join a topic or double-click a peer to start a conversation.")
        placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        placeholder.setWordWrap(True)
        self.conversations.addTab(placeholder, "Welcome")
        self.setCentralWidget(self.conversations)

        self.docks: dict[str, QDockWidget] = {}
        # The side columns run the full height; the bottom area sits between them. Otherwise
        # the window's minimum height is the left column plus the bottom area.
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self._dock("Peers", self.peers, Qt.DockWidgetArea.LeftDockWidgetArea)
        self._dock("Topics", self.topics, Qt.DockWidgetArea.LeftDockWidgetArea)
        self._dock("Files", self.files_pane, Qt.DockWidgetArea.RightDockWidgetArea)
        self._dock("Topic monitor", self.monitor, Qt.DockWidgetArea.BottomDockWidgetArea)
        self._dock("Transfers", self.transfers, Qt.DockWidgetArea.BottomDockWidgetArea)
        self._dock("Log", self.log_view, Qt.DockWidgetArea.BottomDockWidgetArea)

        self.state_label = ElidedLabel("Starting…", mode=Qt.TextElideMode.ElideRight)
        # Its own width (at most ElidedLabel's cap), shrinking before the window would grow;
        # the rest of the bar is for temporary messages.
        self.state_label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        # How others reach us matters more than the counts: it keeps its shortest form.
        self.reach_label = ElidedLabel("", mode=Qt.TextElideMode.ElideRight, keep_shortest=True)
        self.reach_label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.statusBar().addPermanentWidget(self.reach_label)
        self.statusBar().addPermanentWidget(self.state_label)
        self._menus()

        self.peers.openChat.connect(self.open_direct)
        self.peers.connectRequested.connect(self.connect_to)
        self.peers.addContacts.connect(lambda e: self._run(self._contacts(e, add=True)))
        self.peers.removeContacts.connect(lambda e: self._run(self._contacts(e, add=False)))
        self.peers.nicknameChanged.connect(self._set_nickname)
        self.topics.joinRequested.connect(self.join_topic)
        self.topics.leaveRequested.connect(self.leave_topic)
        self.topics.openTopic.connect(self.open_topic)
        self.monitor.monitorRequested.connect(self._monitor)
        self.monitor.unmonitorRequested.connect(self._unmonitor)
        self.files_pane.copied.connect(
            lambda cid: self.statusBar().showMessage(f"Copied {cid}", 3000)
        )

        self.files = FilesController(
            self.files_pane,
            client,
            self,
            self._run,
            lambda title, text: self.notify.emit(title, text),
            self.transfers_model,
        )
        for change in (
            self.transfers_model.rowsInserted,
            self.transfers_model.dataChanged,
            self.transfers_model.modelReset,
        ):
            change.connect(self._transfers_title)
        client.online.connect(self._on_started)
        client.failed.connect(self._on_failed)
        client.event_received.connect(self._on_event)
        self.info_timer = QTimer(self)
        self.info_timer.setInterval(INFO_INTERVAL_MS)
        self.info_timer.timeout.connect(self.refresh)
        self.tick_timer = QTimer(self)
        self.tick_timer.setInterval(1000)
        self.tick_timer.timeout.connect(self.monitor.tick)
        self.tick_timer.timeout.connect(self.transfers_model.tick)
        self.tick_timer.start()
        self.fit_timer = QTimer(self)
        self.fit_timer.setSingleShot(True)
        self.fit_timer.timeout.connect(self.keep_on_screen)
        self._fit_tries = 0
        self._restore_layout()
        self._restore_session()

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
        quit_action.triggered.connect(self.quit)
        file_menu.addAction(quit_action)
        view = self.menuBar().addMenu("&View")
        for dock in self.docks.values():
            view.addAction(dock.toggleViewAction())
        view.addSeparator()
        reset = QAction("&Reset layout", self)
        reset.triggered.connect(self.reset_layout)
        view.addAction(reset)
        find = QAction("&Find in history…", self)
        find.setShortcut(QKeySequence.StandardKey.Find)
        find.triggered.connect(self._find)
        view.addAction(find)

    def _transfers_title(self, *_args: Any) -> None:
        """The dock's tab says how many transfers run, so they are seen behind other tabs."""
        active = self.transfers_model.active_count
        title = f"Transfers ({active})" if active else "Transfers"
        dock = self.docks["Transfers"]
        if dock.windowTitle() != title:
            dock.setWindowTitle(title)

    def _settings(self) -> QSettings:
        return QSettings(str(self.data_dir / "window.ini"), QSettings.Format.IniFormat)

    def _available(self) -> Any:
        screen = self.screen() or QGuiApplication.primaryScreen()
        return screen.availableGeometry()

    def _default_layout(self) -> None:
        """Peers and Topics on the left; Files on the right on a wide screen, with the monitor
        and the log at the bottom on a narrow one."""
        available = self._available()
        compact = geometry.is_compact(available)
        left, right, bottom = (
            Qt.DockWidgetArea.LeftDockWidgetArea,
            Qt.DockWidgetArea.RightDockWidgetArea,
            Qt.DockWidgetArea.BottomDockWidgetArea,
        )
        for title, area in (
            ("Peers", left),
            ("Topics", left),
            ("Files", bottom if compact else right),
            ("Topic monitor", bottom),
            ("Transfers", bottom),
            ("Log", bottom),
        ):
            dock = self.docks[title]
            dock.setFloating(False)
            self.addDockWidget(area, dock)
            dock.show()
        if compact:
            self.tabifyDockWidget(self.docks["Files"], self.docks["Topic monitor"])
        self.tabifyDockWidget(self.docks["Topic monitor"], self.docks["Transfers"])
        self.tabifyDockWidget(self.docks["Transfers"], self.docks["Log"])
        self.docks["Files" if compact else "Topic monitor"].raise_()
        width = available.width()
        self.resizeDocks(
            [self.docks["Peers"], self.docks["Topics"]], [330, 260], Qt.Orientation.Vertical
        )
        self.resizeDocks([self.docks["Peers"]], [max(260, width // 5)], Qt.Orientation.Horizontal)
        if not compact:
            self.resizeDocks(
                [self.docks["Files"]], [max(340, int(width * 0.28))], Qt.Orientation.Horizontal
            )
        self.resizeDocks(
            [self.docks["Topic monitor"]],
            [max(180, available.height() // 4)],
            Qt.Orientation.Vertical,
        )

    def _place(self, pos: QPoint | None = None, size: Any = None) -> None:
        """Put the window (frame and title bar included) on its screen."""
        available = self._available()
        if pos is None or size is None:
            pos, size = geometry.default_geometry(available)
        else:
            pos, size = geometry.fit(pos, size, available)
        self.resize(size)
        self.move(pos)

    def _restore_layout(self) -> None:
        self._default_layout()
        settings = self._settings()
        saved_geometry, state = settings.value("geometry"), settings.value("state")
        if isinstance(saved_geometry, QByteArray) and self.restoreGeometry(saved_geometry):
            # The saved place may be from another screen (a docked laptop, a beamer).
            if not self.isMaximized():
                self._place(self.pos(), self.size())
        else:
            self._place()
        if isinstance(state, QByteArray):
            self.restoreState(state)

    def keep_on_screen(self) -> None:
        """Shrink and move a shown window whose frame runs off its screen's available area.

        Placing it at start is not enough: a caller may resize it (a test harness, a script),
        Qt may restore a saved geometry as it was, and un-maximizing brings back a size saved
        on a bigger screen. The real frame is used once the window manager has drawn one,
        ``geometry.FRAME`` until then, and the check is made again until it has (a window
        moved before it has a frame is placed by its inside: its title bar would end above
        the screen)."""
        if not self.isVisible() or self.windowState() & (
            Qt.WindowState.WindowMaximized
            | Qt.WindowState.WindowFullScreen
            | Qt.WindowState.WindowMinimized
        ):
            return
        frame = self.frameGeometry().size() - self.size()
        if frame.width() <= 0 and frame.height() <= 0:
            frame = geometry.FRAME
            self._fit_tries += 1
            if self._fit_tries < FIT_TRIES:  # offscreen and some platforms never have one
                self.fit_timer.start(FIT_RETRY_MS)
        pos, size = geometry.fit(self.pos(), self.size(), self._available(), frame=frame)
        if size != self.size():
            self.resize(size)
        if pos != self.pos():
            self.move(pos)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._fit_tries = 0
        self.fit_timer.start(0)  # once the window system has placed it

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.WindowStateChange:
            self._fit_tries = 0
            self.fit_timer.start(0)  # un-maximized: the normal size may be a bigger screen's

    def reset_layout(self) -> None:
        """View → Reset layout: every pane back where a first start puts it."""
        if self.isMaximized() or self.isFullScreen():
            self.showNormal()
        self._default_layout()
        self._place()

    def show_window(self) -> None:
        """From the tray or a link: bring the window back as it was (maximized stays so)."""
        if self.isMinimized():
            self.setWindowState(self.windowState() & ~Qt.WindowState.WindowMinimized)
        self.show()
        self.raise_()
        self.activateWindow()

    def toggle_window(self) -> None:
        if self.isVisible() and not self.isMinimized():
            self.hide()
        else:
            self.show_window()

    def save_layout(self) -> None:
        settings = self._settings()
        settings.setValue("geometry", self.saveGeometry())
        settings.setValue("state", self.saveState())
        settings.sync()

    # -- core state ---------------------------------------------------------------------------

    def _on_started(self, me: PeerIdentity) -> None:
        self.peer_id = me.peer_id
        self._online_at = time.monotonic()
        self.statusBar().showMessage(f"Peer {short_id(self.peer_id)} started", 5000)
        self.files.own_id = self.peer_id
        # A new peer (first start, or a restart after new settings) rejoins what the user had.
        self._topic_ops.clear()  # a new peer: nothing of the old one's to wait for
        for topic in self.topics.topic_names():
            self._topic_op(topic, self.client.subscribe, f"join {topic}")
        for topic in self.monitor.topics:
            self._run(self.client.monitor(topic), what=f"monitor {topic}")
        self.info_timer.start()
        self.refresh()
        self.files.refresh()

    def _on_failed(self, message: str) -> None:
        self.state_label.setText("Offline — the peer is not running")
        QMessageBox.critical(self, "Peerdesk", message)

    def refresh(self) -> None:
        if self.client.running:
            self._run(self._refresh())

    async def _refresh(self) -> None:
        snapshot = await self.client.state()
        self.state = snapshot
        info = snapshot.info
        self.peers.set_identity(info.peer_id, list(info.addrs))
        before = dict(self.peers_model.chosen)
        self.peers_model.update_from_info(info)
        if self.peers_model.chosen != before:
            self._keep_chosen_names()
            for peer, name in self.peers_model.chosen.items():
                if before.get(peer) != name:
                    self._retitle(peer)
        aliases = {r.peer: r.alias for r in self.peers_model.rows}
        aliases[info.peer_id] = "you"  # our own file notices come back on the topic too
        for joined in snapshot.joined:
            self.topics.set_members(joined.topic, list(joined.peers), aliases)
        self.monitor.alias = aliases
        self.files_pane.set_peers(
            [
                (r.peer, f"{r.alias}  {short_id(r.peer)}")
                for r in self.peers_model.rows
                if r.connected
            ]
        )
        for stats in snapshot.monitored:
            self.monitor.set_mesh(stats.topic, list(stats.mesh))
        for stats in snapshot.monitored:
            if stats.members is not None:
                self.monitor.set_members(stats.topic, {m.peer: m.since for m in stats.members})
        online = len(info.connections)
        dht = (
            "DHT ready"
            if info.dht_ready
            else "DHT bootstrapping"
            if self.has_bootstrap
            else "DHT: no bootstrap peers"
        )
        lan = "LAN discovery on" if info.mdns else "LAN discovery off"
        peers = f"{online} peer{'s' if online != 1 else ''}"
        state = f"Online — {peers} · {dht} · {lan}"
        waited = time.monotonic() - self._online_at
        reach_forms = reachability_forms(info, self.peers_model.alias, waited)
        reach = reach_forms[0]
        if state != self.state_label.text() or reach != self.reach_label.text():
            self.state_label.setText(state, f"{peers} · {dht}", peers)
            self.reach_label.setText(*reach_forms)
            self.stateChanged.emit(f"{state}\n{reach}")
        self.reach_label.setToolTip(f"{reach}\n{reachability_tooltip(info)}")

    def _on_event(self, event: Any) -> None:
        self.files.on_event(event)
        if isinstance(event, ev.TopicData):
            self._topic_message(event)
        elif isinstance(event, ev.PeerData):
            self._direct_message(event)
        elif isinstance(event, ev.PeerChange):
            self.monitor.on_change(event.topic, event.peer, event.joined)
        elif isinstance(event, ev.PeerConnected | ev.PeerDisconnected | ev.ReachabilityChanged):
            self.refresh()
        elif isinstance(event, ev.CoreError):
            self.statusBar().showMessage(event.message, 10000)
        elif isinstance(event, ev.PeerFailed):
            self.info_timer.stop()
            self._on_failed(event.error)

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
            for m in self.history.recent(key, HISTORY_SHOWN):
                status = "failed" if m.status == "sending" else m.status  # from a closed app
                alias = "me" if m.mine else self.peers_model.alias(m.sender)
                view.model.append(
                    ChatMessage(m.sender, alias, m.value, m.at, m.mine, status, m.msg_id, m.id)
                )
            view.submitted.connect(lambda value, row, v=view: self._send(v, value, row))
            index = self.conversations.addTab(view, tab)
            self.conversations.setTabToolTip(index, key.partition(":")[2])
            self._save_session()
        if focus:
            self.conversations.setCurrentWidget(view)
        return view

    def _append(self, view: ConversationView, msg: ChatMessage) -> int:
        msg.stored = self.history.add(
            view.key, msg.sender, msg.value, msg.at, mine=msg.mine, status=msg.status
        )
        return view.model.append(msg)

    def _set_status(self, view: ConversationView, row: int, status: str, msg_id: str = "") -> None:
        view.model.set_status(row, status, msg_id)
        stored = view.model.messages[row].stored
        if stored:
            self.history.set_status(stored, status, msg_id)

    def open_topic(self, topic: str, focus: bool = True) -> ConversationView:
        return self._open(
            f"topic:{topic}", f"Topic {topic}", f"# {_tab_text(topic)}", direct=False, focus=focus
        )

    def open_direct(self, peer: str, focus: bool = True) -> ConversationView:
        alias = self.peers_model.alias(peer)
        view = self._open(
            f"peer:{peer}",
            f"Direct messages with {alias} · {peer} on {self.protocol}",
            f"@ {_tab_text(alias)}",
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
        """Closing a tab only hides the conversation: its history stays in the profile."""
        widget = self.conversations.widget(index)
        self.conversations.removeTab(index)
        if widget is not None:
            widget.deleteLater()
        self._save_session()

    def _topic_message(self, event: ev.TopicData) -> None:
        notice = is_file_notice(event.data)
        self.monitor.on_message(
            event.topic, event.peer, "(files changed)" if notice else render(event.data)
        )
        if event.peer == self.peer_id or notice:
            return  # our own publication coming back (shown when sent), or a system notice
        view = self.open_topic(event.topic, focus=False)
        self._append(
            view,
            ChatMessage(event.peer, self.peers_model.alias(event.peer), event.data, time.time()),
        )
        if self.conversations.currentWidget() is not view:
            self.topics.count_unread(event.topic)

    def _direct_message(self, event: ev.PeerData) -> None:
        view = self.open_direct(event.peer, focus=False)
        alias = self.peers_model.alias(event.peer)
        self._append(view, ChatMessage(event.peer, alias, event.data, time.time()))
        if self.conversations.currentWidget() is not view or not self.isActiveWindow():
            self.peers_model.add_unread(event.peer)
            self.notify.emit(f"Message from {alias}", render(event.data))

    def _send(self, view: ConversationView, value: Any, row: int) -> None:
        msg = view.model.messages[row]
        if not msg.stored:
            msg.stored = self.history.add(view.key, "", value, msg.at, mine=True, status=msg.status)
        else:
            self.history.set_status(msg.stored, msg.status)
        kind, _, name = view.key.partition(":")
        if not self.client.running:
            self._set_status(view, row, "failed" if view.direct else "unheard")
            self.statusBar().showMessage("Not sent: the peer is not running yet", 5000)
        elif kind == "topic":
            self._run(self._publish(view, name, value, row), what=f"publish to {name}")
        else:
            self._run(self._send_direct(view, name, value, row))

    async def _publish(self, view: ConversationView, topic: str, value: Any, row: int) -> None:
        sent_to = await self.client.publish(topic, value)
        if sent_to == 0:  # nobody in the topic, or no one reachable: say so, as a DM would
            self._set_status(view, row, "unheard")

    async def _send_direct(self, view: ConversationView, peer: str, value: Any, row: int) -> None:
        try:
            msg_id = await self.client.send(peer, self.protocol, value)
            self._set_status(view, row, "delivered", msg_id)
        except (NotDelivered, ValueError, RuntimeError, ConnectionError) as exc:
            self._set_status(view, row, "failed")
            self.statusBar().showMessage(
                f"Not delivered to {short_id(peer)}: {_reason(exc)}", 10000
            )

    # -- commands -----------------------------------------------------------------------------

    def join_topic(self, topic: str) -> None:
        self.topics.add_topic(topic)
        self.open_topic(topic)
        self._save_session()
        if self.client.running:  # otherwise joined when the peer starts
            self._topic_op(topic, self.client.subscribe, f"join {topic}")

    def leave_topic(self, topic: str) -> None:
        self.topics.remove_topic(topic)
        view = self._conversation(f"topic:{topic}")
        if view is not None:
            self._close_tab(self.conversations.indexOf(view))
        self._save_session()
        if self.client.running:
            self._topic_op(topic, self.client.unsubscribe, f"leave {topic}")

    def _topic_op(self, topic: str, fn: Callable[[str], Awaitable[None]], what: str) -> None:
        """Join and leave of one topic run in the order clicked: as two core tasks, a Leave
        still sending its unsubscription could finish after the Join that followed it and
        leave the topic unjoined."""
        previous = self._topic_ops.get(topic)

        async def go() -> None:
            if previous is not None and not previous.done():
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.shield(previous)
            await fn(topic)

        task = asyncio.ensure_future(go())
        self._topic_ops[topic] = task
        self._run(task, what=what)

    def _monitor(self, topic: str) -> None:
        self._save_session()
        if self.client.running:
            self._run(self.client.monitor(topic), what=f"monitor {topic}")

    def _unmonitor(self, topic: str) -> None:
        self._save_session()
        if self.client.running:
            self._run(self.client.stop_monitor(topic), what=f"stop monitoring {topic}")

    def connect_to(self, text: str) -> None:
        if not text.startswith("/") and not self.client.valid_peer_id(text):
            self.statusBar().showMessage(
                f"{_tab_text(text)} is neither a multiaddr (/ip4/…/p2p/…) nor a peer id", 8000
            )
            return

        async def go() -> None:
            if text.startswith("/"):
                peer_id = await self.client.dial(text)
                self.statusBar().showMessage(
                    f"Connected to {_tab_text(self.peers_model.alias(peer_id))}", 5000
                )
            else:
                await self._contacts([text], add=True)
                self.statusBar().showMessage(
                    f"Looking for {short_id(text)} (kept as a contact)", 5000
                )
            self.refresh()

        self._run(go(), what=f"connect to {short_id(text)}")

    async def _contacts(self, entries: list[str], *, add: bool) -> None:
        change = self.client.add_contacts if add else self.client.remove_contacts
        errors = await change(entries)
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
        if self.client.running:
            self._run(self.client.start_protocol(protocol), what=f"receive on {protocol}")

    def _set_nickname(self, peer: str, name: str) -> None:
        self.peers_model.set_nickname(peer, name)
        self.history.set_state("nicknames", self.peers_model.nicknames)
        self._retitle(peer)
        self.refresh()

    def _keep_chosen_names(self) -> None:
        """The names peers chose, kept so an offline contact and old chats keep them."""
        chosen = self.peers_model.chosen
        for peer in list(chosen)[: max(0, len(chosen) - KEPT_NAMES)]:
            del chosen[peer]
        self.history.set_state("chosen_names", chosen)

    def _retitle(self, peer: str) -> None:
        """A peer's name changed: its conversation's tab and title follow."""
        view = self._conversation(f"peer:{peer}")
        if view is not None:
            alias = self.peers_model.alias(peer)
            index = self.conversations.indexOf(view)
            self.conversations.setTabText(index, f"@ {_tab_text(alias)}")
            view.title.setText(f"Direct messages with {alias} · {peer} on {self.protocol}")

    # -- what a restart keeps -----------------------------------------------------------------

    def _save_session(self) -> None:
        if getattr(self, "_restoring", False):
            return
        tabs = [
            w.key
            for i in range(self.conversations.count())
            if isinstance(w := self.conversations.widget(i), ConversationView)
        ]
        self.history.set_state("topics", self.topics.topic_names())
        self.history.set_state("tabs", tabs)
        self.history.set_state("monitored", self.monitor.topics)
        self.history.commit()

    def _note_transfers_ended(self) -> None:
        self._transfers_ended = True

    def save_transfers(self) -> None:
        """The finished transfers to ``transfers.json``, at most once a second (a dropped
        folder of thousands of small files ends thousands of transfers) and on close."""
        if self._transfers_ended:
            self._transfers_ended = False
            transfer_log.save(self.data_dir, self.transfers_model.ended())

    def _restore_session(self) -> None:
        self._restoring = True
        try:
            nicknames = self.history.get_state("nicknames", {})
            if isinstance(nicknames, dict):
                self.peers_model.nicknames = {str(k): str(v) for k, v in nicknames.items()}
            chosen = self.history.get_state("chosen_names", {})
            if isinstance(chosen, dict):
                self.peers_model.chosen = {str(k): str(v)[:64] for k, v in chosen.items()}
            for topic in _strings(self.history.get_state("topics", [])):
                self.topics.add_topic(topic)
            for topic in _strings(self.history.get_state("monitored", [])):
                self.monitor.add_topic(topic)
            for key in _strings(self.history.get_state("tabs", [])):
                kind, _, name = key.partition(":")
                if kind == "topic" and name:
                    self.open_topic(name, focus=False)
                elif kind == "peer" and name:
                    self.open_direct(name, focus=False)
        finally:
            self._restoring = False

    def _find(self) -> None:
        from gui.dialogs.search import SearchDialog

        dialog = SearchDialog(self.history, self.peers_model.alias, self)
        dialog.openConversation.connect(self._open_key)
        dialog.show()

    def _open_key(self, key: str) -> None:
        kind, _, name = key.partition(":")
        if kind == "topic":
            self.open_topic(name)
        elif kind == "peer":
            self.open_direct(name)

    def _run(self, aw: Awaitable[Any], what: str = "") -> None:
        """Run a core call; a failure becomes a readable message, never a crash."""

        async def guarded() -> None:
            try:
                await aw
            except asyncio.CancelledError:
                self.statusBar().showMessage(f"Cancelled: {what}" if what else "Cancelled", 5000)
            except Exception as exc:
                log.warning("%s failed: %s", what or "operation", exc)
                reason = _reason(exc)
                self.statusBar().showMessage(
                    f"Could not {what}: {reason}" if what else reason, 10000
                )

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def quit(self) -> None:
        """File → Quit, the tray's Quit, a signal: close for real, whatever close-to-tray says."""
        self._quitting = True
        self.show()  # a hidden window's close() would not reach closeEvent
        self.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.close_to_tray and not self._quitting:
            event.ignore()
            self.hide()
            return
        self.save_layout()
        self._save_session()
        self.transfers_model.interrupt("stopped: Peerdesk was closed")
        self.save_transfers()
        self.info_timer.stop()
        super().closeEvent(event)


def _tab_text(text: str, limit: int = 24) -> str:
    """Tab titles and messages quote names the user chose: keep them short."""
    return text if len(text) <= limit else f"{text[: limit // 2]}…{text[-(limit // 2) + 1 :]}"


def _reason(exc: BaseException) -> str:
    """Readable text for a failure: never an empty string, never a library's class name
    alone (``SwarmDialAllFailedError`` means the peer could not be reached)."""
    text = str(exc).strip()
    name = type(exc).__name__
    if "DialAllFailed" in name or "DialAllFailed" in text or "No route" in text:
        return "the peer could not be reached"
    return text.splitlines()[0][:200] if text else name


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []
