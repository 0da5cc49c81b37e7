"""The log pane: the core's log records, filterable by level, for diagnosis.

Records can come from any thread (trio, zeroconf, the importer); the handler only emits a Qt
signal, which Qt queues to the GUI thread."""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPlainTextEdit, QVBoxLayout, QWidget

MAX_LINES = 5000
LEVELS = {
    "Debug": logging.DEBUG,
    "Info": logging.INFO,
    "Warning": logging.WARNING,
    "Error": logging.ERROR,
}


class _Emitter(QObject):
    record = Signal(int, str)


class QtLogHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.emitter = _Emitter()
        self.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.emitter.record.emit(record.levelno, self.format(record))
        except RuntimeError:  # the window is gone during shutdown
            pass


class LogView(QWidget):
    def __init__(self, handler: QtLogHandler) -> None:
        super().__init__()
        self.records: list[tuple[int, str]] = []
        self.level = QComboBox()
        self.level.addItems(list(LEVELS))
        self.level.setCurrentText("Info")
        self.level.currentTextChanged.connect(self._refilter)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(MAX_LINES)
        row = QHBoxLayout()
        row.addWidget(QLabel("Show from level:"))
        row.addWidget(self.level)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.text, 1)
        handler.emitter.record.connect(self.add)

    def add(self, level: int, line: str) -> None:
        self.records.append((level, line))
        del self.records[:-MAX_LINES]
        if level >= LEVELS[self.level.currentText()]:
            self.text.appendPlainText(line)
            self.text.moveCursor(QTextCursor.MoveOperation.End)

    def _refilter(self) -> None:
        threshold = LEVELS[self.level.currentText()]
        self.text.setPlainText("\n".join(line for lvl, line in self.records if lvl >= threshold))
