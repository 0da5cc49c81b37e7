"""A conversation: a topic's chat or direct messages with one peer, with delivery marks."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .autoscroll import follow_bottom

STATUS_MARK = {
    "sending": "…",
    "delivered": "✓",
    "failed": "✗ failed — right-click to retry",
    "": "",
}


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
        item.setToolTip(f"{render(msg.value)}\n— {msg.sender or 'me'}")
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
        stamp = time.strftime("%H:%M", time.localtime(msg.at))
        mark = STATUS_MARK.get(msg.status, msg.status)
        item.setText(f"[{stamp}] {msg.alias}: {render(msg.value)}" + (f"   {mark}" if mark else ""))
        if msg.status == "failed":
            item.setForeground(QBrush(QColor("#b00020")))
        elif msg.mine:
            item.setForeground(QBrush(QColor("#1a5fb4")))

    def statuses(self) -> list[str]:
        return [m.status for m in self.messages if m.mine]


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
        self.title = QLabel(title)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.view = QListView()
        self.view.setModel(self.model)
        # One line per message, all rows the same height: with wrapped rows of varying height
        # every insert re-measured every row, and a burst of 1000 messages stalled the window
        # for 300 ms at a time. Long messages are elided; the tooltip shows them whole.
        self.view.setUniformItemSizes(True)
        self.view.setWordWrap(False)
        self.view.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._menu)
        self.input = QLineEdit()
        self.input.setPlaceholderText("Message — plain text, or JSON")
        self.input.returnPressed.connect(self._submit)
        send = QPushButton("Send")
        send.clicked.connect(self._submit)
        row = QHBoxLayout()
        row.addWidget(self.input, 1)
        row.addWidget(send)
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
        if msg.mine and msg.status == "failed":
            menu = QMenu(self)
            menu.addAction("Retry", lambda: self.retry(index.row()))
            menu.exec(self.view.viewport().mapToGlobal(pos))

    def retry(self, row: int) -> None:
        self.model.set_status(row, "sending")
        self.submitted.emit(self.model.messages[row].value, row)
