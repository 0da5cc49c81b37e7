"""Labels that never widen the window.

A QLabel's minimum width is its whole text: one 52-character peer id or a CID in a header
made the window grow past the screen. ``ElidedLabel`` asks for almost no width, shows as much
of its text as fits with "…" in the middle (ids differ at both ends), and keeps the whole text
in its tooltip and for copying. A text can come with shorter forms of itself: the longest that
fits is shown whole, and only the shortest is ever cut, so a name in it is not."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QSize, Qt
from PySide6.QtGui import QGuiApplication, QPainter, QPaintEvent
from PySide6.QtWidgets import QMenu, QSizePolicy, QWidget

MIN_WIDTH = 40
MAX_HINT = 400
"""The widest a label asks to be: beyond this it shows a shorter form or elides."""
KEEP_CAP = 240
"""The most a ``keep_shortest`` label insists on, so it can never widen the window much."""


class ElidedLabel(QWidget):
    def __init__(
        self,
        text: str = "",
        parent: QWidget | None = None,
        *,
        mode: Qt.TextElideMode = Qt.TextElideMode.ElideMiddle,
        keep_shortest: bool = False,
    ) -> None:
        """``keep_shortest``: the label's minimum width is its shortest form's (at most
        ``KEEP_CAP``), so in a crowded row it gives up room to its neighbours only that far."""
        super().__init__(parent)
        self._forms: tuple[str, ...] = ("",)
        self.mode = mode
        self.keep_shortest = keep_shortest
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)
        self.setText(text)

    def text(self) -> str:
        return self._forms[0]

    def setText(self, text: str, *shorter: str) -> None:
        """``text`` is also the tooltip (and what Copy copies); set another tooltip after it
        if wanted. ``shorter``: the same said in fewer words, shortest last."""
        self._forms = (text, *shorter)
        self.setToolTip(text)
        self.updateGeometry()
        self.update()

    def displayed(self) -> str:
        """The text as it is painted at the current width: the longest form that fits, else
        the shortest one elided."""
        metrics, width = self.fontMetrics(), max(0, self.width())
        for form in self._forms:
            if metrics.horizontalAdvance(form) <= width:
                return form
        return metrics.elidedText(self._forms[-1], self.mode, width)

    def sizeHint(self) -> QSize:
        metrics = self.fontMetrics()
        return QSize(min(metrics.horizontalAdvance(self._forms[0]), MAX_HINT), metrics.height() + 2)

    def minimumSizeHint(self) -> QSize:
        width = MIN_WIDTH
        if self.keep_shortest:
            shortest = self.fontMetrics().horizontalAdvance(self._forms[-1]) + 1
            width = max(MIN_WIDTH, min(shortest, KEEP_CAP))
        return QSize(width, self.fontMetrics().height() + 2)

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
