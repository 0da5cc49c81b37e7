"""The Peers pane: who we are connected to, contacts, and our own identity to share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QEvent, QModelIndex, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QGuiApplication
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLineEdit,
    QMenu,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from core.snapshots import PeerInfo
from gui.models.names import display_name
from gui.models.rows import Index, RowsModel
from gui.widgets.elide import ElidedLabel
from gui.widgets.qr import QrDialog

COPIED_MS = 1500
COLUMN_CAPS = (175, 170, 100, 320)
"""The widest the Peer, Link, Direction and Address columns get; Protocols takes the rest."""
COLUMN_MINS = (90, 60, 36, 36, 36)
"""The narrowest each column gets before the table would scroll sideways."""
SHRINK_ORDER = (4, 3, 2, 0, 1)
"""Which columns give way first when the pane is narrow: Protocols, Address, Direction, the
name; the link and its latency last (what a narrow dock must still show)."""
KIND_HELP = {
    "direct": "direct: a connection of its own to the peer",
    "relayed": "relayed: through a circuit relay (limited in time and data; hole punching "
    "may make it direct)",
    "hole-punched": "hole-punched: direct, made through both NATs by DCUtR",
}


def short_id(peer: str) -> str:
    return f"{peer[:8]}…{peer[-6:]}" if len(peer) > 16 else peer


@dataclass
class PeerRow:
    peer: str
    alias: str = ""
    addrs: list[str] = field(default_factory=list)
    latency_ms: float | None = None
    protocols: list[str] = field(default_factory=list)
    direction: str = ""
    kind: str = ""
    """How new streams reach the peer: 'direct', 'relayed' or 'hole-punched'."""
    links: list[str] = field(default_factory=list)
    """Every connection to the peer, as "kind direction address" (a relayed one can stay
    beside the direct one hole punching made)."""
    contact: bool = False
    connected: bool = False
    unread: int = 0


class PeersModel(RowsModel):
    COLUMNS = ["Peer", "Link", "Direction", "Address", "Protocols"]

    def __init__(self) -> None:
        super().__init__()
        self.nicknames: dict[str, str] = {}
        """Names the user gave peers (kept in the profile by the main window)."""
        self.chosen: dict[str, str] = {}
        """Names peers chose for themselves, as last heard (kept in the profile too)."""

    def alias(self, peer: str) -> str:
        """The user's nickname for the peer, or a name derived from its id: the same in
        every window and every session."""
        return display_name(peer, self.nicknames, self.chosen)

    def set_nickname(self, peer: str, name: str) -> None:
        if name:
            self.nicknames[peer] = name
        else:
            self.nicknames.pop(peer, None)
        for i, row in enumerate(self.rows):
            if row.peer == peer:
                row.alias = self.alias(peer)
                self.dataChanged.emit(self.index(i, 0), self.index(i, 0))

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                # The id's tail tells two peers of one name apart; its head "12D3KooW" is the
                # same for every peer and pushed the tail out of a narrow dock.
                name = f"{row.alias}  …{row.peer[-6:]}"
                if row.contact:
                    name = "★ " + name
                if row.unread:
                    name += f"  ({row.unread})"
                return name
            if col == 1:  # how, and how fast: what a narrow dock must still show
                latency = "" if row.latency_ms is None else f"{row.latency_ms:.1f} ms"
                return " · ".join(t for t in (row.kind, latency) if t) if row.connected else ""
            if col == 2:
                return row.direction if row.connected else "offline"
            if col == 3:
                return row.addrs[0] if row.addrs else ""
            if col == 4:
                return ", ".join(p for p in row.protocols if not p.startswith("/ipfs/id"))
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == 1 and row.connected:
                return "\n".join([KIND_HELP.get(row.kind, row.kind), *row.links])
            chosen = self.chosen.get(row.peer)
            says = [f"calls itself “{chosen}”"] if chosen and chosen != row.alias else []
            return "\n".join([row.peer, *says, *row.addrs])
        if role == Qt.ItemDataRole.FontRole and col == 0 and row.unread:
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.ForegroundRole and not row.connected:
            return QBrush(QColor("gray"))
        if role == Qt.ItemDataRole.UserRole:
            return row.peer
        return None

    def update_from_info(self, info: PeerInfo) -> None:
        """Replace the rows with the peer's state: connections plus offline contacts."""
        for conn in info.connections:
            if conn.name:
                self.chosen[conn.peer] = conn.name
        unread = {r.peer: r.unread for r in self.rows}
        rows = []
        for conn in info.connections:
            rows.append(
                PeerRow(
                    conn.peer,
                    self.alias(conn.peer),
                    list(conn.addrs),
                    conn.latency_ms,
                    list(conn.protocols),
                    conn.direction,
                    conn.kind,
                    [" ".join((link.kind, link.direction, *link.addrs[:1])) for link in conn.links],
                    conn.contact,
                    True,
                    unread.get(conn.peer, 0),
                )
            )
        connected = {r.peer for r in rows}
        contacts = {c.peer for c in info.contacts}
        for contact in info.contacts:
            if contact.peer not in connected:
                rows.append(
                    PeerRow(
                        contact.peer,
                        self.alias(contact.peer),
                        list(contact.addrs),
                        contact=True,
                        unread=unread.get(contact.peer, 0),
                    )
                )
        for peer, count in unread.items():
            if count and peer not in connected and peer not in contacts:
                rows.append(PeerRow(peer, self.alias(peer), unread=count))
        rows.sort(key=lambda r: (not r.connected, not r.contact, r.alias))
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def add_unread(self, peer: str) -> None:
        for i, row in enumerate(self.rows):
            if row.peer == peer:
                row.unread += 1
                self.dataChanged.emit(self.index(i, 0), self.index(i, 0))
                return
        self.beginInsertRows(QModelIndex(), len(self.rows), len(self.rows))
        self.rows.append(PeerRow(peer, self.alias(peer), unread=1))
        self.endInsertRows()

    def clear_unread(self, peer: str) -> None:
        for i, row in enumerate(self.rows):
            if row.peer == peer and row.unread:
                row.unread = 0
                self.dataChanged.emit(self.index(i, 0), self.index(i, 0))


class PeersPane(QWidget):
    openChat = Signal(str)
    """The user wants to message this peer."""
    connectRequested = Signal(str)
    addContacts = Signal(list)
    removeContacts = Signal(list)
    nicknameChanged = Signal(str, str)
    """(peer, nickname or "" to go back to the derived name)"""

    def __init__(self, model: PeersModel) -> None:
        super().__init__()
        self.model = model
        self.own_id = ""
        self.own_name = ""
        """The display name others are told (the setting), shown as ours when set."""
        self.own_addrs: list[str] = []
        self.me = ElidedLabel("Starting…")
        copy_id = QPushButton("Copy ID")
        copy_id.clicked.connect(lambda: self._copy(copy_id, self.own_id))
        copy_addrs = QPushButton("Copy addresses")
        copy_addrs.clicked.connect(lambda: self._copy(copy_addrs, "\n".join(self.own_addrs)))
        show_qr = QPushButton("QR")
        show_qr.setToolTip("Show this peer's address as a QR code")
        show_qr.clicked.connect(self._show_qr)
        top = QHBoxLayout()
        for button in (copy_id, copy_addrs, show_qr):
            top.addWidget(button)

        self.table = QTableView()
        self.table.setModel(model)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._menu)
        self.table.doubleClicked.connect(
            lambda idx: self.openChat.emit(model.data(idx, Qt.ItemDataRole.UserRole))
        )
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        # Columns fit the pane (``fit_columns``): each as wide as its content up to a cap, the
        # last one stretched over what is left, and in a narrow dock the long ones give way
        # and elide (the whole id and addresses are in the tooltip). Sized to content, a
        # relayed address and the protocol list scrolled the table sideways at 1280 px.
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setMinimumSectionSize(min(COLUMN_MINS))
        header.setStretchLastSection(False)  # a stretched one stays >= 100 px: sized here
        header.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.setHorizontalScrollMode(QTableView.ScrollMode.ScrollPerPixel)
        self.table.viewport().installEventFilter(self)
        for changed in (model.modelReset, model.rowsInserted, model.layoutChanged):
            changed.connect(self.fit_columns)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(22)

        self.address = QLineEdit()
        self.address.setPlaceholderText("/ip4/…/tcp/…/p2p/12D3KooW…  or a peer id")
        self.address.returnPressed.connect(self._connect)
        connect = QPushButton("Connect")
        connect.clicked.connect(self._connect)
        add = QPushButton("Add contact")
        add.clicked.connect(self._add_contact)
        bottom = QHBoxLayout()
        bottom.addWidget(self.address, 1)
        bottom.addWidget(connect)
        bottom.addWidget(add)

        layout = QVBoxLayout(self)
        layout.addWidget(self.me)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addLayout(bottom)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.table.viewport() and event.type() == QEvent.Type.Resize:
            self.fit_columns()
        return super().eventFilter(watched, event)

    def fit_columns(self, *_changed: object) -> None:
        """Column widths that fit the table's width: content up to ``COLUMN_CAPS``, then the
        columns in ``SHRINK_ORDER`` narrowed down to ``COLUMN_MINS`` until they fit; the last
        column takes whatever is left."""
        header = self.table.horizontalHeader()
        count = self.model.columnCount()
        if count != len(COLUMN_MINS):
            return
        room = self.table.viewport().width()
        widths = []
        for column in range(count):
            want = max(self.table.sizeHintForColumn(column), header.sectionSizeHint(column))
            cap = COLUMN_CAPS[column] if column < len(COLUMN_CAPS) else want
            widths.append(max(COLUMN_MINS[column], min(want, cap)))
        excess = sum(widths) - room
        for column in SHRINK_ORDER:
            if excess <= 0:
                break
            give = min(excess, widths[column] - COLUMN_MINS[column])
            widths[column] -= give
            excess -= give
        widths[-1] = max(COLUMN_MINS[-1], room - sum(widths[:-1]))  # the rest: Protocols
        for column, width in enumerate(widths):
            header.resizeSection(column, width)

    def set_identity(self, peer_id: str, addrs: list[str]) -> None:
        self.own_id, self.own_addrs = peer_id, addrs
        name = self.own_name or self.model.alias(peer_id)
        self.me.setText(f"This peer: {name} · {short_id(peer_id)}")
        self.me.setToolTip(peer_id)

    @staticmethod
    def _copy(button: QPushButton, text: str) -> None:
        """Copy, and say so on the button for a moment."""
        if not text:
            return
        QGuiApplication.clipboard().setText(text)
        if button.text() != "Copied ✓":
            label = button.text()
            button.setText("Copied ✓")
            QTimer.singleShot(COPIED_MS, lambda: button.setText(label))

    def _show_qr(self) -> None:
        text = self.own_addrs[0] if self.own_addrs else self.own_id
        if text:
            QrDialog(text, self).exec()

    def _connect(self) -> None:
        text = self.address.text().strip()
        if text:
            self.connectRequested.emit(text)

    def _add_contact(self) -> None:
        text = self.address.text().strip()
        if not text:
            text, ok = QInputDialog.getText(self, "Add contact", "Peer id or multiaddr:")
            if not ok or not text.strip():
                return
        self.addContacts.emit([text.strip()])
        self.address.clear()

    def _menu(self, pos: Any) -> None:
        index = self.table.indexAt(pos)
        if not index.isValid():
            return
        peer = self.model.data(index, Qt.ItemDataRole.UserRole)
        row = self.model.rows[index.row()]
        menu = QMenu(self)
        menu.addAction("Message…", lambda: self.openChat.emit(peer))
        menu.addAction("Copy peer id", lambda: QGuiApplication.clipboard().setText(peer))
        menu.addAction("Set nickname…", lambda: self._nickname(peer))
        if row.contact:
            menu.addAction("Remove from contacts", lambda: self.removeContacts.emit([peer]))
        else:
            menu.addAction("Keep connected (add contact)", lambda: self.addContacts.emit([peer]))
        menu.exec(self.table.viewport().mapToGlobal(pos))

    def _nickname(self, peer: str) -> None:
        name, ok = QInputDialog.getText(
            self,
            "Nickname",
            f"Your name for {short_id(peer)} (empty: back to the name from its id):",
            text=self.model.nicknames.get(peer, ""),
        )
        if ok:
            self.nicknameChanged.emit(peer, name.strip())
