"""What every Peerdesk table model shares: named columns over a list of rows."""

from __future__ import annotations

from typing import Any, ClassVar

from PySide6.QtCore import (
    QAbstractItemModel,
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
)

Index = QModelIndex | QPersistentModelIndex


def column_header(
    model: QAbstractItemModel,
    columns: list[str],
    section: int,
    orientation: Qt.Orientation,
    role: int,
) -> Any:
    if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
        return columns[section]
    return None


class RowsModel(QAbstractTableModel):
    """A flat table: subclasses name ``COLUMNS`` and keep their rows in ``self.rows``."""

    COLUMNS: ClassVar[list[str]] = []

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[Any] = []

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        return column_header(self, self.COLUMNS, section, orientation, role)
