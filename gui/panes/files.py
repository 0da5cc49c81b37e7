"""The Files pane: our IPFS file tree (drop files in, make folders, delete) or, read-only, any
peer's tree; save, open and copy CIDs; progress bars with cancel for long work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtGui import (
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QGuiApplication,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QToolBar,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from gui.models.files import FilesModel, Node
from gui.widgets.elide import ElidedLabel

OWN = ""
WIDE_ENOUGH_FOR_CIDS = 440
"""Pixels of tree below which the CID column is hidden (names were cut to "ta…ng")."""
WIDE_ENOUGH_FOR_TYPES = 300


class FileTreeView(QTreeView):
    """Accepts files and folders dropped from the desktop onto a folder (or the root)."""

    dropped = Signal(str, list)
    """(target folder path in the tree, [local Path, …])"""

    def __init__(self, model: FilesModel) -> None:
        super().__init__()
        self.files = model
        self.setModel(model)
        self.setAcceptDrops(True)
        self.setDropIndicatorShown(True)
        self.setDragDropMode(QTreeView.DragDropMode.DropOnly)
        self.setSelectionMode(QTreeView.SelectionMode.ExtendedSelection)
        self.setUniformRowHeights(True)
        header = self.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        # Name takes what is left: wide content columns squeezed names to "H…" in a narrow dock.
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(2, 76)
        header.resizeSection(3, 84)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)

    def resizeEvent(self, event: QResizeEvent) -> None:
        """A narrow dock keeps the names readable: the CID column goes first, then the type
        (both stay in each row's tooltip, and Copy CID copies the CID)."""
        super().resizeEvent(event)
        width = self.viewport().width()
        self.setColumnHidden(3, width < WIDE_ENOUGH_FOR_CIDS)
        self.setColumnHidden(2, width < WIDE_ENOUGH_FOR_TYPES)

    def _local_paths(self, event: QDropEvent | QDragEnterEvent | QDragMoveEvent) -> list[Path]:
        data = event.mimeData()
        if self.files.read_only or not data.hasUrls():
            return []
        return [Path(u.toLocalFile()) for u in data.urls() if u.isLocalFile()]

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._local_paths(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if self._local_paths(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = self._local_paths(event)
        if not paths:
            event.ignore()
            return
        index = self.indexAt(event.position().toPoint())
        self.dropped.emit(self.files.folder_for(index), paths)
        event.acceptProposedAction()


class ProgressRow(QWidget):
    """A running job under the tree: its label and pace on one line, then a bar the dock's
    whole width with Cancel (beside the label the bar was too narrow for its text). What
    they say comes from the job's row in the Transfers model (``show_progress``), the one
    place speed is measured."""

    cancelled = Signal()

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = ElidedLabel(label)
        self.pace = QLabel("")
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.cancelled.emit)
        top = QHBoxLayout()
        top.addWidget(self.label, 1)
        top.addWidget(self.pace)
        bottom = QHBoxLayout()
        bottom.addWidget(self.bar, 1)
        bottom.addWidget(cancel)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        column.addLayout(top)
        column.addLayout(bottom)

    def show_progress(self, fraction: float | None, amount: str, pace: str) -> None:
        """``fraction`` None: the total is not known yet (the bar keeps moving)."""
        if fraction is not None:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(1000 * fraction))
        self.bar.setFormat(amount)
        self.pace.setText(pace)
        self.bar.setToolTip(" · ".join(t for t in (amount, pace) if t))


class FilesPane(QWidget):
    sourceChanged = Signal(str)
    """The peer whose tree to show; "" is our own."""
    dropped = Signal(str, list)
    newFolder = Signal(str)
    deleteRequested = Signal(list)
    saveRequested = Signal(str, str, str)
    """(cid, destination path, peer to fetch from or "")"""
    openRequested = Signal(str, str, str)
    """(cid, file name, peer or "")"""
    getByCid = Signal(str, str)
    refreshRequested = Signal()
    copied = Signal(str)
    """A CID went to the clipboard (the window says so)."""

    def __init__(self) -> None:
        super().__init__()
        self.model = FilesModel()
        self.downloads: Path | None = None
        """The download folder setting (None: not set)."""
        self.source = QComboBox()
        self.source.addItem("My files", OWN)
        self.source.currentIndexChanged.connect(
            lambda _i: self.sourceChanged.emit(self.source.currentData())
        )
        self.root_label = ElidedLabel("")
        self.source.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.source.setMinimumContentsLength(10)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refreshRequested.emit)
        top = QHBoxLayout()
        top.addWidget(QLabel("Show:"))
        top.addWidget(self.source, 1)
        top.addWidget(refresh)

        self.view = FileTreeView(self.model)
        self.view.dropped.connect(self.dropped.emit)
        self.view.doubleClicked.connect(self._open_index)

        # A tool bar, not a row of buttons: what does not fit in a narrow dock goes into its
        # » menu instead of making the dock (and the window) wider.
        actions = QToolBar()
        actions.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.add_files = actions.addAction("Add files…", self._add_files)
        self.new_folder = actions.addAction("New folder", self._new_folder)
        self.delete = actions.addAction("Delete", self._delete)
        actions.addAction("Save as…", self._save)
        self.copy_cid = actions.addAction("Copy CID", self._copy_cid)

        self.cid_input = QLineEdit()
        self.cid_input.setPlaceholderText("Get by CID: bafy… or Qm…")
        self.fallback_input = QLineEdit()
        self.fallback_input.setPlaceholderText("fallback peer id (optional)")
        get = QPushButton("Get")
        get.clicked.connect(self._get)
        get_row = QHBoxLayout()
        get_row.addWidget(self.cid_input, 2)
        get_row.addWidget(self.fallback_input, 1)
        get_row.addWidget(get)

        self.progress_box = QVBoxLayout()
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.root_label)
        layout.addWidget(self.view, 1)
        layout.addWidget(actions)
        layout.addLayout(get_row)
        layout.addLayout(self.progress_box)
        self.progress: dict[str, ProgressRow] = {}

    def download_dir(self) -> Path:
        """Where save dialogs start: the download folder setting, else ~/Downloads or ~."""
        for folder in (self.downloads, Path.home() / "Downloads"):
            if folder is not None and folder.is_dir():
                return folder
        return Path.home()

    @property
    def current_source(self) -> str:
        return self.source.currentData()

    def set_peers(self, peers: list[tuple[str, str]]) -> None:
        """(peer id, label) of peers whose trees can be browsed."""
        current = self.current_source
        wanted = [(OWN, "My files"), *peers]
        have = [
            (self.source.itemData(i), self.source.itemText(i)) for i in range(self.source.count())
        ]
        if have == wanted:
            return
        self.source.blockSignals(True)
        self.source.clear()
        for peer, label in wanted:
            self.source.addItem(label, peer)
        index = self.source.findData(current)
        self.source.setCurrentIndex(max(0, index))
        self.source.blockSignals(False)
        if index < 0 and current != OWN:
            self.sourceChanged.emit(OWN)

    def show_listing(
        self, root: str, entries: dict[str, dict[str, Any]], *, read_only: bool
    ) -> None:
        expanded = self._expanded_paths()
        self.model.set_listing(root, entries, read_only=read_only)
        for path in expanded:
            index = self.model.index_of(path)
            if index.isValid():
                self.view.expand(index)
        for widget in (self.new_folder, self.delete, self.add_files):
            widget.setEnabled(not read_only)
        count = len(entries)
        self.root_label.setText(f"{count} item{'s' if count != 1 else ''} · root {root}")

    def _expanded_paths(self) -> list[str]:
        out = []
        stack = [QModelIndex()]
        while stack:
            parent = stack.pop()
            for row in range(self.model.rowCount(parent)):
                index = self.model.index(row, 0, parent)
                if self.view.isExpanded(index):
                    out.append(self.model.node(index).path)
                    stack.append(index)
        return out

    def selected(self) -> list[Node]:
        rows = self.view.selectionModel().selectedRows(0) if self.view.selectionModel() else []
        return [self.model.node(i) for i in rows]

    def _current_folder(self) -> str:
        nodes = self.selected()
        return self.model.folder_for(self.view.currentIndex()) if nodes else ""

    def _new_folder(self) -> None:
        name, ok = QInputDialog.getText(self, "New folder", "Folder name:")
        if ok and name.strip():
            base = self._current_folder()
            self.newFolder.emit(f"{base}/{name.strip()}" if base else name.strip())

    def _add_files(self) -> None:
        names, _ = QFileDialog.getOpenFileNames(self, "Add files", str(Path.home()))
        if names:
            self.dropped.emit(self._current_folder(), [Path(n) for n in names])

    def _delete(self) -> None:
        nodes = self.selected()
        if not nodes or self.model.read_only:
            return
        what = nodes[0].path if len(nodes) == 1 else f"{len(nodes)} items"
        answer = QMessageBox.question(self, "Delete", f"Delete {what} from your files?")
        if answer == QMessageBox.StandardButton.Yes:
            self.deleteRequested.emit([n.path for n in nodes])

    def _save(self) -> None:
        files = [n for n in self.selected() if n.kind == "file"]
        if not files:
            return
        dest, _ = QFileDialog.getSaveFileName(
            self, "Save file", str(self.download_dir() / files[0].name)
        )
        if dest:
            self.saveRequested.emit(files[0].cid, dest, self.current_source)

    def _open_index(self, index: QModelIndex) -> None:
        node = self.model.node(index)
        if node.kind == "file":
            self.openRequested.emit(node.cid, node.name, self.current_source)

    def _copy_cid(self) -> None:
        nodes = self.selected()
        cid = nodes[0].cid if nodes else self.model.root_cid
        if cid:
            QGuiApplication.clipboard().setText(cid)
            self.copied.emit(cid)

    def _get(self) -> None:
        cid = self.cid_input.text().strip()
        if cid:
            self.getByCid.emit(cid, self.fallback_input.text().strip())

    def progress_row(self, op: str, label: str) -> ProgressRow:
        row = self.progress.get(op)
        if row is None:
            row = self.progress[op] = ProgressRow(label)
            self.progress_box.addWidget(row)
        return row

    def finish_progress(self, op: str) -> None:
        row = self.progress.pop(op, None)
        if row is not None:
            row.setParent(None)
            row.deleteLater()
