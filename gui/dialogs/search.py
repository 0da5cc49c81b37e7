"""View → Find in history: search every conversation kept in the profile, open one."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.profile.history import History
from gui.panes.chat import render

SEARCH_DELAY_MS = 200


class SearchDialog(QDialog):
    openConversation = Signal(str)
    """The conversation key ("topic:…" / "peer:…") of a result the user double-clicked."""

    def __init__(
        self, history: History, alias: Callable[[str], str], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Find in history")
        self.history = history
        self.alias = alias
        self.query = QLineEdit()
        self.query.setPlaceholderText("Text to find in every conversation")
        self.results = QListWidget()
        self.results.setWordWrap(True)
        self.results.itemDoubleClicked.connect(self._open)
        self.summary = QLabel("")
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SEARCH_DELAY_MS)
        self._timer.timeout.connect(self.search)
        self.query.textChanged.connect(lambda _t: self._timer.start())
        layout = QVBoxLayout(self)
        layout.addWidget(self.query)
        layout.addWidget(self.results, 1)
        layout.addWidget(self.summary)
        self.resize(520, 420)

    def search(self) -> None:
        self.results.clear()
        text = self.query.text().strip()
        if not text:
            self.summary.setText("")
            return
        self.history.commit()  # what arrived in the last second is searchable too
        found = self.history.search(text)
        for m in found:
            kind, _, name = m.conv.partition(":")
            where = f"# {name}" if kind == "topic" else f"@ {self.alias(name)}"
            who = "me" if m.mine else self.alias(m.sender)
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(m.at))
            item = QListWidgetItem(f"{where} · {when} · {who}: {render(m.value)}")
            item.setData(Qt.ItemDataRole.UserRole, m.conv)
            self.results.addItem(item)
        self.summary.setText(
            f"{len(found)} message{'' if len(found) == 1 else 's'} found · double-click to open"
        )

    def _open(self, item: QListWidgetItem) -> None:
        self.openConversation.emit(item.data(Qt.ItemDataRole.UserRole))
