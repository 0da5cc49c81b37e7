"""The Topics pane: topics we joined, unread counts, and who is in the selected one."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gui.panes.peers import short_id
from gui.widgets.elide import ElidedLabel


class TopicsPane(QWidget):
    joinRequested = Signal(str)
    leaveRequested = Signal(str)
    openTopic = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.unread: dict[str, int] = {}
        self.members: dict[str, list[str]] = {}
        self._alias: dict[str, str] = {}
        self.topic_input = QLineEdit()
        self.topic_input.setPlaceholderText("Topic name, e.g. chatroom")
        self.topic_input.returnPressed.connect(self._join)
        join = QPushButton("Join")
        join.clicked.connect(self._join)
        leave = QPushButton("Leave")
        leave.clicked.connect(self._leave)
        row = QHBoxLayout()
        row.addWidget(self.topic_input, 1)
        row.addWidget(join)
        row.addWidget(leave)
        self.topics = QListWidget()
        self.topics.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.topics.currentItemChanged.connect(self._selected)
        self.topics.itemDoubleClicked.connect(
            lambda item: self.openTopic.emit(item.data(Qt.ItemDataRole.UserRole))
        )
        self.member_label = ElidedLabel("Peers in topic")
        self.member_list = QListWidget()
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.topics, 2)
        layout.addWidget(self.member_label)
        layout.addWidget(self.member_list, 1)

    def topic_names(self) -> list[str]:
        return [
            self.topics.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.topics.count())
        ]

    def current(self) -> str:
        item = self.topics.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item else ""

    def _join(self) -> None:
        topic = self.topic_input.text().strip()
        if topic:
            self.topic_input.clear()
            self.joinRequested.emit(topic)

    def _leave(self) -> None:
        if self.current():
            self.leaveRequested.emit(self.current())

    def add_topic(self, topic: str) -> None:
        if self._item(topic) is None:
            item = QListWidgetItem(topic)
            item.setData(Qt.ItemDataRole.UserRole, topic)
            self.topics.addItem(item)
            self.topics.setCurrentItem(item)

    def remove_topic(self, topic: str) -> None:
        item = self._item(topic)
        if item is not None:
            self.topics.takeItem(self.topics.row(item))
        self.unread.pop(topic, None)
        self.members.pop(topic, None)

    def count_unread(self, topic: str) -> None:
        self.unread[topic] = self.unread.get(topic, 0) + 1
        self._refresh(topic)

    def clear_unread(self, topic: str) -> None:
        self.unread[topic] = 0
        self._refresh(topic)

    def set_members(self, topic: str, peers: list[str], alias: dict[str, str]) -> None:
        self.members[topic] = peers
        self._alias = alias
        self._refresh(topic)
        if topic == self.current():
            self._show_members(topic)

    def _refresh(self, topic: str) -> None:
        item = self._item(topic)
        if item is None:
            return
        count = len(self.members.get(topic, []))
        text = f"{topic}   ({count} peer{'' if count == 1 else 's'})"
        if self.unread.get(topic):
            text += f"   • {self.unread[topic]} new"
        item.setText(text)
        font = item.font()
        font.setBold(bool(self.unread.get(topic)))
        item.setFont(font)

    def _selected(self, item: QListWidgetItem | None, _old: object = None) -> None:
        if item is not None:
            self._show_members(item.data(Qt.ItemDataRole.UserRole))

    def _show_members(self, topic: str) -> None:
        self.member_label.setText(f"Peers in {topic}")
        self.member_list.clear()
        for peer in self.members.get(topic, []):
            self.member_list.addItem(f"{self._alias.get(peer, '')}  {short_id(peer)}".strip())

    def _item(self, topic: str) -> QListWidgetItem | None:
        for i in range(self.topics.count()):
            item = self.topics.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == topic:
                return item
        return None
