"""Our address as a QR code, so a phone or another machine can pick it up without typing."""

from __future__ import annotations

import segno
from PySide6.QtCore import QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QGuiApplication, QPainter, QPaintEvent
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPushButton, QVBoxLayout, QWidget


class QrWidget(QWidget):
    """Paints the QR matrix with QPainter: crisp at any size, no image files."""

    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.matrix = [list(row) for row in segno.make(text, error="m").matrix]
        self.setMinimumSize(260, 260)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), Qt.GlobalColor.white)
        n = len(self.matrix) + 8  # quiet zone of 4 modules each side
        side = min(self.width(), self.height())
        cell = side / n
        x0 = (self.width() - side) / 2 + 4 * cell
        y0 = (self.height() - side) / 2 + 4 * cell
        black = QColor("black")
        for y, row in enumerate(self.matrix):
            for x, bit in enumerate(row):
                if bit:
                    painter.fillRect(
                        QRectF(x0 + x * cell, y0 + y * cell, cell + 0.5, cell + 0.5), black
                    )
        painter.end()


class QrDialog(QDialog):
    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("This peer's address")
        label = QLabel(text)
        label.setWordWrap(True)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.copy = QPushButton("Copy address")
        buttons.addButton(self.copy, QDialogButtonBox.ButtonRole.ActionRole)
        self.copy.clicked.connect(lambda: self._copy(text))
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QrWidget(text), 1)
        layout.addWidget(label)
        layout.addWidget(buttons)
        self.resize(360, 460)

    def _copy(self, text: str) -> None:
        QGuiApplication.clipboard().setText(text)
        self.copy.setText("Copied ✓")
        QTimer.singleShot(1500, lambda: self.copy.setText("Copy address"))
