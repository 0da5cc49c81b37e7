"""Keep a list or table scrolled to its newest row without paying for it on every row.

``scrollToBottom`` lays out every row of a view whose rows differ in height; called for each
of 1000 incoming messages it froze the window for seconds. Here, inserts only arm a short
timer, and the view follows the bottom only if the user was already there (someone reading
older messages is not yanked away)."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QAbstractItemView

FOLLOW_MS = 60


def follow_bottom(view: QAbstractItemView) -> QTimer:
    timer = QTimer(view)
    timer.setSingleShot(True)
    timer.setInterval(FOLLOW_MS)
    timer.timeout.connect(view.scrollToBottom)
    bar = view.verticalScrollBar()

    def inserted(*_args: object) -> None:
        if not timer.isActive() and bar.value() >= bar.maximum() - 4:
            timer.start()

    model = view.model()
    model.rowsInserted.connect(inserted)
    model.modelReset.connect(inserted)
    return timer
