"""Labels that never widen the window.

A QLabel's minimum width is its whole text: one 52-character peer id or a CID in a header
made the window grow past the screen. ``ElidedLabel`` asks for almost no width, shows as much
of its text as fits with "…" in the middle (ids differ at both ends), and keeps the whole text
in its tooltip and for copying."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QSize, Qt
from PySide6.QtGui import QGuiApplication, QPainter, QPaintEvent
from PySide6.QtWidgets import QMenu, QSizePolicy, QWidget

MIN_WIDTH = 40


class ElidedLabel(QWidget):
    def __init__(
        self,
        text: str = "",
        parent: QWidget | None = None,
        *,
        mode: Qt.TextElideMode = Qt.TextElideMode.ElideMiddle,
    ) -> None:
        super().__init__(parent)
        self._text = ""
        self.mode = mode
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)
        self.setText(text)

    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:
        """Also the tooltip (and what Copy copies); set another tooltip after it if wanted."""
        self._text = text
        self.setToolTip(text)
        self.updateGeometry()
        self.update()

    def displayed(self) -> str:
        """The text as it is painted at the current width."""
        return self.fontMetrics().elidedText(self._text, self.mode, max(0, self.width()))

    def sizeHint(self) -> QSize:
        metrics = self.fontMetrics()
        return QSize(min(metrics.horizontalAdvance(self._text), 400), metrics.height() + 2)

    def minimumSizeHint(self) -> QSize:
        return QSize(MIN_WIDTH, self.fontMetrics().height() + 2)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.drawText(
            self.rect(),
            Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
            self.displayed(),
        )
        painter.end()

    def _menu(self, pos: QPoint) -> None:
        menu = QMenu(self)
        menu.addAction("Copy", lambda: QGuiApplication.clipboard().setText(self.toolTip()))
        menu.exec(self.mapToGlobal(pos))
