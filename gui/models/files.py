"""A file tree as a Qt model, fed from a flat ``{path: entry}`` listing.

Children are handed to the view in batches as folders are expanded (``canFetchMore`` /
``fetchMore``), so a folder of 100 000 files opens without building 100 000 rows at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QAbstractItemModel, QMimeData, QModelIndex, Qt
from PySide6.QtWidgets import QApplication, QStyle

from gui.models.rows import Index, column_header

BATCH = 500


@dataclass(eq=False)
class Node:
    name: str
    path: str
    kind: str  # "file" | "directory"
    cid: str = ""
    mime: str = ""
    size: int | None = None
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    shown: int = 0
    """How many children the view has been given so far."""
    by_name: dict[str, Node] = field(default_factory=dict)


def human_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


class FilesModel(QAbstractItemModel):
    COLUMNS = ["Name", "Size", "Type", "CID"]

    def __init__(self) -> None:
        super().__init__()
        self.root = Node("", "", "directory")
        self.read_only = False
        self.root_cid = ""
        style = QApplication.style()
        self._dir_icon = style.standardIcon(QStyle.StandardPixmap.SP_DirIcon)
        self._file_icon = style.standardIcon(QStyle.StandardPixmap.SP_FileIcon)

    # -- building ------------------------------------------------------------------------------

    def set_listing(
        self, root_cid: str, entries: dict[str, dict[str, Any]], *, read_only: bool
    ) -> None:
        """Rebuild from a listing; ``entries`` values have ``type``, ``cid`` and optionally
        ``mimeType`` and ``size``."""
        root = Node("", "", "directory", root_cid)
        for path in sorted(entries, key=lambda p: p.count("/")):
            entry = entries[path]
            parent_path, _, name = path.rpartition("/")
            parent = _find(root, parent_path)
            if parent is None or not name:
                continue
            node = Node(
                name,
                path,
                entry.get("type", "file"),
                entry.get("cid", ""),
                entry.get("mimeType", ""),
                entry.get("size"),
                parent,
            )
            parent.children.append(node)
            parent.by_name[name] = node
        _sort(root)
        self.beginResetModel()
        self.root, self.root_cid, self.read_only = root, root_cid, read_only
        self.endResetModel()

    def node(self, index: Index) -> Node:
        return index.internalPointer() if index.isValid() else self.root

    def index_of(self, path: str) -> QModelIndex:
        """The index for a path, fetching folders along the way."""
        node = _find(self.root, path)
        if node is None or node is self.root:
            return QModelIndex()
        chain = []
        while node is not None and node is not self.root:
            chain.append(node)
            node = node.parent
        index = QModelIndex()
        for n in reversed(chain):
            parent = n.parent
            assert parent is not None
            row = parent.children.index(n)
            while parent.shown <= row:
                self.fetchMore(index)
            index = self.index(row, 0, index)
        return index

    # -- QAbstractItemModel -------------------------------------------------------------------

    def index(self, row: int, column: int, parent: Index = QModelIndex()) -> QModelIndex:  # noqa: B008
        node = self.node(parent)
        if 0 <= row < node.shown and 0 <= column < len(self.COLUMNS):
            return self.createIndex(row, column, node.children[row])
        return QModelIndex()

    def parent(self, index: Index = QModelIndex()) -> QModelIndex:  # type: ignore[override]  # noqa: B008
        if not index.isValid():
            return QModelIndex()
        parent = self.node(index).parent
        if parent is None or parent is self.root:
            return QModelIndex()
        grand = parent.parent
        assert grand is not None
        return self.createIndex(grand.children.index(parent), 0, parent)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        if parent.isValid() and parent.column() != 0:
            return 0
        return self.node(parent).shown

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return len(self.COLUMNS)

    def hasChildren(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        node = self.node(parent)
        return node.kind == "directory" and bool(node.children)

    def canFetchMore(self, parent: Index) -> bool:
        node = self.node(parent)
        return node.shown < len(node.children)

    def fetchMore(self, parent: Index) -> None:
        node = self.node(parent)
        more = min(BATCH, len(node.children) - node.shown)
        if more <= 0:
            return
        self.beginInsertRows(parent, node.shown, node.shown + more - 1)
        node.shown += more
        self.endInsertRows()

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        return column_header(self, self.COLUMNS, section, orientation, role)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        node = self.node(index)
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return node.name
            if col == 1:
                return human_size(node.size) if node.kind == "file" else ""
            if col == 2:
                return "folder" if node.kind == "directory" else _kind(node.mime)
            if col == 3:
                return node.cid
        if role == Qt.ItemDataRole.DecorationRole and col == 0:
            return self._dir_icon if node.kind == "directory" else self._file_icon
        if role == Qt.ItemDataRole.ToolTipRole:  # everything a narrow dock's columns hide
            kind = "folder" if node.kind == "directory" else (_kind(node.mime) or "file")
            size = f" · {human_size(node.size)}" if node.kind == "file" and node.size else ""
            return f"{node.path}\n{kind}{size}\n{node.cid}"
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if not self.read_only:
            flags |= Qt.ItemFlag.ItemIsDropEnabled
        return flags

    def supportedDropActions(self) -> Qt.DropAction:
        return Qt.DropAction.CopyAction

    def mimeTypes(self) -> list[str]:
        return ["text/uri-list"]

    def canDropMimeData(
        self, data: QMimeData, action: Qt.DropAction, row: int, column: int, parent: Index
    ) -> bool:
        return not self.read_only and data.hasUrls()

    def folder_for(self, index: Index) -> str:
        """Where a drop on ``index`` lands: that folder, or the folder holding that file."""
        node = self.node(index)
        if node.kind != "directory":
            node = node.parent or self.root
        return node.path


def _kind(mime: str) -> str:
    """A MIME type as a short word: Go's detector calls anything unrecognised
    "application/octet-stream", which a narrow column cut to "appl…ream"."""
    base = mime.split(";")[0].strip()
    return "binary" if base == "application/octet-stream" else base


def _find(root: Node, path: str) -> Node | None:
    node = root
    for part in path.split("/") if path else []:
        child = node.by_name.get(part)
        if child is None:
            return None
        node = child
    return node


def _sort(node: Node) -> None:
    """Folders first, then names case-insensitively — what file managers do."""
    stack = [node]
    while stack:
        n = stack.pop()
        n.children.sort(key=lambda c: (c.kind != "directory", c.name.lower()))
        stack.extend(c for c in n.children if c.children)
