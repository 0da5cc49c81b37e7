"""The Transfers pane: every import and download of this session with its progress, speed,
time left and outcome; Cancel for the selected ones, Clear finished, and where downloads go
(the download folder setting)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QHeaderView,
    QMenu,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from gui.models.transfers import FRACTION_ROLE, STATE_ROLE, TransfersModel
from gui.widgets.elide import ElidedLabel

FAILED_COLOR = QColor(198, 40, 40)
"""A failed transfer's progress cell: its reason in red where the bar was."""


class ProgressDelegate(QStyledItemDelegate):
    """Paints the progress column as a progress bar with the column's text on it; a failed
    job gets no bar (it showed as an empty box) but "Failed: why" in red, elided at the end."""

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        if index.data(STATE_ROLE) == "failed":
            text = QStyleOptionViewItem(option)
            self.initStyleOption(text, index)
            text.textElideMode = Qt.TextElideMode.ElideRight
            for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Inactive):
                text.palette.setColor(group, QPalette.ColorRole.Text, FAILED_COLOR)
            style = option.widget.style() if option.widget else QApplication.style()
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, text, painter, option.widget)
            return
        fraction = index.data(FRACTION_ROLE)
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(1, 1, -1, -1)
        bar.minimum, bar.maximum = 0, 1000
        bar.progress = int(1000 * fraction) if fraction is not None else 0
        bar.text = str(index.data() or "")
        bar.textVisible = True
        bar.state = option.state
        style = option.widget.style() if option.widget else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter)


class ElideRightDelegate(QStyledItemDelegate):
    """How a job ended is read from its start ("failed: it is not stored…"); the table's
    own middle elision, right for names and CIDs, left "failed:…ided it"."""

    def initStyleOption(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        super().initStyleOption(option, index)
        option.textElideMode = Qt.TextElideMode.ElideRight


class TransfersPane(QWidget):
    changeDownloadFolder = Signal()
    """The user wants to pick another download folder (the app asks and saves the setting)."""

    def __init__(self, model: TransfersModel) -> None:
        super().__init__()
        self.model = model
        self.table = QTableView()
        self.table.setModel(model)
        self.table.setItemDelegateForColumn(2, ProgressDelegate(self.table))
        self.table.setItemDelegateForColumn(5, ElideRightDelegate(self.table))
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(26)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._menu)
        header = self.table.horizontalHeader()
        # The name takes what is left; how a job ended gets a fixed width (a long failure
        # reason made the table scroll sideways; the whole reason is in the tooltip); the
        # others as narrow as their content allows.
        header.setMinimumSectionSize(40)
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        for column, width in ((2, 140), (3, 70), (4, 64), (5, 104)):
            header.resizeSection(column, width)

        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Cancel the selected transfers")
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.clear_button = clear = QPushButton("Clear finished")
        clear.setToolTip("Remove the transfers that ended from the list (and from the profile)")
        clear.clicked.connect(model.clear_finished)
        self.folder = ElidedLabel("")
        change = QPushButton("Download folder…")
        change.clicked.connect(self.changeDownloadFolder.emit)
        buttons = QHBoxLayout()
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(clear)
        buttons.addWidget(self.folder, 1)
        buttons.addWidget(change)

        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        # The buttons are enabled only when they would do something.
        self.table.selectionModel().selectionChanged.connect(self._update_buttons)
        for changed in (model.endedChanged, model.rowsInserted, model.modelReset):
            changed.connect(self._update_buttons)
        self._update_buttons()

    def _update_buttons(self, *_changed: object) -> None:
        rows = self.model.rows
        self.cancel_button.setEnabled(
            any(0 <= r < len(rows) and rows[r].active for r in self.selected_rows())
        )
        self.clear_button.setEnabled(any(not job.active for job in rows))

    def set_download_folder(self, folder: str) -> None:
        self.folder.setText(f"Downloads: {folder}")

    def selected_rows(self) -> list[int]:
        selection = self.table.selectionModel()
        return sorted(i.row() for i in selection.selectedRows()) if selection else []

    def cancel_selected(self) -> None:
        for row in self.selected_rows():
            self.model.cancel(row)

    def _menu(self, pos: Any) -> None:
        index = self.table.indexAt(pos)
        if not index.isValid():
            return
        row = index.row()
        menu = QMenu(self)
        cancel = menu.addAction("Cancel", lambda: self.model.cancel(row))
        cancel.setEnabled(self.model.rows[row].active)
        menu.addAction("Clear finished", self.model.clear_finished)
        menu.exec(self.table.viewport().mapToGlobal(pos))
