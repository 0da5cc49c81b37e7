"""Where the window goes and how big it is, from the screen it is on.

Pure functions of rectangles, so the rules are tested without a window manager. ``move`` in Qt
places the window's frame (title bar included), ``resize`` sizes its inside: the frame is
allowed for with ``FRAME`` so the title bar and the menus are always on the screen."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, QSize

FRAME = QSize(12, 40)
"""Room for a window manager's borders and title bar (fluxbox, GNOME, KDE: 24 to 38 px)."""
LARGEST = QSize(1440, 920)
COMPACT_WIDTH = 1200
"""Below this screen width the Files pane shares the bottom area instead of a column."""


def is_compact(available: QRect) -> bool:
    return available.width() < COMPACT_WIDTH


def default_geometry(available: QRect) -> tuple[QPoint, QSize]:
    """Frame position and inside size for a first start: most of the screen, centred."""
    width = min(LARGEST.width(), int(available.width() * 0.94))
    height = min(LARGEST.height(), int(available.height() * 0.92))
    return fit(QPoint(0, 0), QSize(width, height), available, centre=True)


def fit(
    pos: QPoint, size: QSize, available: QRect, *, centre: bool = False, frame: QSize = FRAME
) -> tuple[QPoint, QSize]:
    """The same window shrunk to the screen and moved onto it, ``frame`` (the window
    manager's borders and title bar, when known) included."""
    width = max(1, min(size.width(), available.width() - frame.width()))
    height = max(1, min(size.height(), available.height() - frame.height()))
    outer_w, outer_h = width + frame.width(), height + frame.height()
    if centre:
        x = available.x() + (available.width() - outer_w) // 2
        y = available.y() + (available.height() - outer_h) // 2
    else:
        x = min(max(pos.x(), available.x()), available.x() + available.width() - outer_w)
        y = min(max(pos.y(), available.y()), available.y() + available.height() - outer_h)
    return QPoint(x, y), QSize(width, height)
