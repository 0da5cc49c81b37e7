"""A conversation: a topic's chat or direct messages with one peer, with delivery marks.

Rows wrap (a long message is read whole, a multi-line one keeps its lines); the input takes
several lines (Shift+Enter), Enter sends. Each row shows when it was sent or received, with
the full date in its tooltip."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QGuiApplication,
    QKeyEvent,
    QStandardItem,
    QStandardItemModel,
)
from PySide6.QtWidgets import (
    QHBoxLayout,
    QListView,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from gui.widgets.autoscroll import follow_bottom
from gui.widgets.elide import ElidedLabel

STATUS_MARK = {
    "sending": "…",
    "delivered": "✓",
    "failed": "✗ failed — right-click to retry",
    "unheard": "⚠ no one received this",
    "": "",
}
MAX_INPUT_LINES = 6


def parse_input(text: str) -> Any:
    """What the user typed: JSON if it parses as JSON, otherwise the text as a JSON string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def is_file_notice(value: Any) -> bool:
    """p2p-webapp's "my files changed" notice: for the Files pane, not for the chat."""
    return isinstance(value, dict) and value.get("type") == "p2p-webapp-file-update"


def render(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("text"), str) and len(value) == 1:
        return value["text"]
    return json.dumps(value, ensure_ascii=False)


@dataclass
class ChatMessage:
    sender: str
    alias: str
    value: Any
    at: float
    mine: bool = False
    status: str = ""
    msg_id: str = ""
    stored: int = 0
    """The message's id in the profile's history (0: not stored)."""


def stamp(at: float, now: float | None = None) -> str:
    """Time of day for today's messages, with the date for older ones (from the history)."""
    local, today = time.localtime(at), time.localtime(now if now is not None else time.time())
    if local[:3] == today[:3]:
        return time.strftime("%H:%M", local)
    if local.tm_year == today.tm_year:
        return time.strftime("%d %b %H:%M", local)
    return time.strftime("%Y-%m-%d %H:%M", local)


class ChatModel(QStandardItemModel):
    """Rows are C++ items filled once from Python, so painting a busy conversation calls no
    Python at all: with a Python ``data()`` every repaint made ~250 calls into Python, each
    waiting for the GIL while the core thread worked through a burst of messages."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[ChatMessage] = []

    def append(self, msg: ChatMessage) -> int:
        self.messages.append(msg)
        item = QStandardItem()
        item.setEditable(False)
        when = time.strftime("%A %Y-%m-%d %H:%M:%S", time.localtime(msg.at))
        item.setToolTip(f"{'Sent' if msg.mine else 'Received'} {when}\n{msg.sender or 'me'}")
        self._fill(item, msg)
        self.appendRow(item)
        return len(self.messages) - 1

    def set_status(self, row: int, status: str, msg_id: str = "") -> None:
        msg = self.messages[row]
        msg.status = status
        if msg_id:
            msg.msg_id = msg_id
        item = self.item(row)
        if item is not None:
            self._fill(item, msg)

    @staticmethod
    def _fill(item: QStandardItem, msg: ChatMessage) -> None:
        mark = STATUS_MARK.get(msg.status, msg.status)
        text = f"[{stamp(msg.at)}] {msg.alias}: {render(msg.value)}"
        item.setText(text + (f"   {mark}" if mark else ""))
        if msg.status == "failed":
            item.setForeground(QBrush(QColor("#b00020")))
        elif msg.status == "unheard":
            item.setForeground(QBrush(QColor("#9a6700")))
        elif msg.mine:
            item.setForeground(QBrush(QColor("#1a5fb4")))

    def statuses(self) -> list[str]:
        return [m.status for m in self.messages if m.mine]


class MessageInput(QPlainTextEdit):
    """Several lines of input: Enter sends, Shift+Enter starts a new line. Grows with its
    text up to a few lines, then scrolls."""

    submitted = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.setTabChangesFocus(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.document().contentsChanged.connect(self.updateGeometry)

    def text(self) -> str:
        return self.toPlainText()

    def setText(self, text: str) -> None:
        self.setPlainText(text)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if enter and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.submitted.emit()
            return
        super().keyPressEvent(event)

    def sizeHint(self) -> QSize:
        lines = min(MAX_INPUT_LINES, max(1, self.document().blockCount()))
        line = self.fontMetrics().lineSpacing()
        margins = self.contentsMargins()
        frame = 2 * int(self.document().documentMargin()) + margins.top() + margins.bottom()
        return QSize(200, lines * line + frame + 2)

    def minimumSizeHint(self) -> QSize:
        return QSize(80, self.sizeHint().height())


class ConversationView(QWidget):
    """The central area's view of one conversation. It only displays and collects input;
    the main window sends through the core and reports back with ``set_status``."""

    submitted = Signal(object, int)
    """(value, row) — a new message the user wrote; the row shows its delivery state."""

    def __init__(self, title: str, key: str, *, direct: bool) -> None:
        super().__init__()
        self.key = key
        self.direct = direct
        self.model = ChatModel()
        self.title = ElidedLabel(title)
        self.view = QListView()
        self.view.setModel(self.model)
        # Rows wrap and differ in height. Laying out every row on every insert stalled the
        # window during bursts; batched layout measures a few rows per event-loop turn.
        self.view.setUniformItemSizes(False)
        self.view.setWordWrap(True)
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setLayoutMode(QListView.LayoutMode.Batched)
        self.view.setBatchSize(50)
        self.view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.view.setSpacing(1)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._menu)
        self.input = MessageInput()
        self.input.setPlaceholderText(
            "Message — plain text or JSON · Enter sends, Shift+Enter: new line"
        )
        self.input.submitted.connect(self._submit)
        send = QPushButton("Send")
        send.clicked.connect(self._submit)
        row = QHBoxLayout()
        row.addWidget(self.input, 1)
        row.addWidget(send, 0, Qt.AlignmentFlag.AlignBottom)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.view, 1)
        layout.addLayout(row)
        follow_bottom(self.view)

    def _submit(self) -> None:
        text = self.input.text().strip()
        if not text:
            return
        self.input.clear()
        self.send_value(parse_input(text))

    def send_value(self, value: Any) -> None:
        row = self.model.append(
            ChatMessage(
                "", "me", value, time.time(), mine=True, status="sending" if self.direct else ""
            )
        )
        self.submitted.emit(value, row)

    def _menu(self, pos: Any) -> None:
        index = self.view.indexAt(pos)
        if not index.isValid():
            return
        msg = self.model.messages[index.row()]
        menu = QMenu(self)
        menu.addAction("Copy text", lambda: QGuiApplication.clipboard().setText(render(msg.value)))
        if msg.sender:
            menu.addAction(
                "Copy sender's peer id", lambda: QGuiApplication.clipboard().setText(msg.sender)
            )
        if msg.mine and msg.status == "failed":
            menu.addAction("Retry", lambda: self.retry(index.row()))
        menu.exec(self.view.viewport().mapToGlobal(pos))

    def retry(self, row: int) -> None:
        self.model.set_status(row, "sending")
        self.submitted.emit(self.model.messages[row].value, row)
