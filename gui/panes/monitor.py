"""Visual topic monitoring: a live timeline of joins, leaves and messages, a message-rate
sparkline per topic, and the current members with when each joined."""

from __future__ import annotations

import csv
import json
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex, QPointF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainter, QPaintEvent, QPen, QPolygonF
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from gui.models.rows import Index, RowsModel
from gui.panes.peers import short_id
from gui.widgets.autoscroll import follow_bottom
from gui.widgets.topic_graph import TopicGraph

KIND_COLOR = {"join": "#2e7d32", "leave": "#c62828", "message": "#1a5fb4"}
RATE_SECONDS = 120
MAX_TIMELINE = 50_000


@dataclass
class TimelineEvent:
    at: float
    topic: str
    kind: str  # join | leave | message
    peer: str
    detail: str = ""


class TimelineModel(RowsModel):
    COLUMNS = ["Time", "Topic", "Event", "Peer", "Detail"]

    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self._held: list[TimelineEvent] = []
        self.alias: dict[str, str] = {}
        """peer id → the name the window shows for it (the id's tail when it has none)."""

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        ev = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return [
                time.strftime("%H:%M:%S", time.localtime(ev.at)),
                ev.topic,
                ev.kind,
                self.alias.get(ev.peer) or short_id(ev.peer),
                ev.detail,
            ][index.column()]
        if role == Qt.ItemDataRole.ForegroundRole and index.column() == 2:
            return QBrush(QColor(KIND_COLOR.get(ev.kind, "black")))
        if role == Qt.ItemDataRole.ToolTipRole:
            return ev.peer
        return None

    def add(self, ev: TimelineEvent) -> None:
        """While paused, events are held (not lost) and appear on resume."""
        if self.paused:
            self._held.append(ev)
            return
        self._insert([ev])

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        if not paused and self._held:
            held, self._held = self._held, []
            self._insert(held)

    def _insert(self, evs: list[TimelineEvent]) -> None:
        start = len(self.rows)
        self.beginInsertRows(QModelIndex(), start, start + len(evs) - 1)
        self.rows.extend(evs)
        self.endInsertRows()
        overflow = len(self.rows) - MAX_TIMELINE
        if overflow > 0:
            self.beginRemoveRows(QModelIndex(), 0, overflow - 1)
            del self.rows[:overflow]
            self.endRemoveRows()

    def clear(self) -> None:
        self.beginResetModel()
        self.rows.clear()
        self._held.clear()
        self.endResetModel()

    def export(self, path: Path) -> None:
        rows = [asdict(e) for e in self.rows]
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps(rows, indent=1))
            return
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["at", "topic", "kind", "peer", "detail"])
            writer.writeheader()
            writer.writerows(rows)


class Sparkline(QWidget):
    """Messages per second over the last two minutes, one bucket per second."""

    def __init__(self) -> None:
        super().__init__()
        self.values: deque[int] = deque([0] * RATE_SECONDS, maxlen=RATE_SECONDS)
        self.setMinimumHeight(56)

    def set_values(self, values: list[int]) -> None:
        self.values = deque(values[-RATE_SECONDS:], maxlen=RATE_SECONDS)
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor("#fafafa"))
        values = list(self.values)
        busiest = max(values, default=0)
        peak = busiest or 1
        w, h = self.width(), self.height() - 14
        step = w / max(1, len(values) - 1)
        points = QPolygonF(
            [QPointF(i * step, 12 + h - v / peak * (h - 2)) for i, v in enumerate(values)]
        )
        painter.setPen(QPen(QColor("#1a5fb4"), 1.5))
        painter.drawPolyline(points)
        painter.setPen(QColor("#555"))
        now = values[-1] if values else 0
        painter.drawText(
            4,
            11,
            f"{now} msg/s now · peak {busiest} msg/s · last 2 min"
            if busiest
            else "no messages in the last 2 min",
        )
        painter.end()


class RateCounter:
    """Per-topic messages per second, bucketed on the GUI clock."""

    def __init__(self) -> None:
        self.buckets: dict[str, deque[tuple[int, int]]] = {}

    def hit(self, topic: str, at: float | None = None) -> None:
        second = int(at if at is not None else time.time())
        buckets = self.buckets.setdefault(topic, deque(maxlen=RATE_SECONDS + 5))
        if buckets and buckets[-1][0] == second:
            buckets[-1] = (second, buckets[-1][1] + 1)
        else:
            buckets.append((second, 1))

    def series(self, topic: str, now: float | None = None) -> list[int]:
        end = int(now if now is not None else time.time())
        counts = dict(self.buckets.get(topic, ()))
        return [counts.get(s, 0) for s in range(end - RATE_SECONDS + 1, end + 1)]


class MonitorPane(QWidget):
    monitorRequested = Signal(str)
    unmonitorRequested = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.timeline = TimelineModel()
        self.rates = RateCounter()
        self.members: dict[str, dict[str, float]] = {}
        self.mesh: dict[str, set[str]] = {}
        """topic → the peers in our GossipSub mesh for it (only for topics we also joined)."""
        self._alias: dict[str, str] = {}

        self.topic_input = QLineEdit()
        self.topic_input.setPlaceholderText("Topic to monitor")
        self.topic_input.returnPressed.connect(self._add)
        add = QPushButton("Monitor")
        add.clicked.connect(self._add)
        self.topic_pick = QComboBox()
        self.topic_pick.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.topic_pick.setMinimumContentsLength(8)
        self.topic_pick.currentTextChanged.connect(self._show_topic)
        stop = QPushButton("Stop")
        stop.clicked.connect(self._stop)
        self.pause = QCheckBox("Pause")
        self.pause.toggled.connect(self.timeline.set_paused)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.timeline.clear)
        export = QPushButton("Export…")
        export.clicked.connect(self._export)
        top = QHBoxLayout()
        top.addWidget(self.topic_input, 1)
        top.addWidget(add)
        top.addWidget(QLabel("Show:"))
        top.addWidget(self.topic_pick, 1)
        top.addWidget(stop)
        controls = QHBoxLayout()
        controls.addWidget(self.pause)
        controls.addWidget(clear)
        controls.addWidget(export)
        controls.addStretch(1)

        self.sparkline = Sparkline()
        self.table = QTableView()
        self.table.setModel(self.timeline)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.setWordWrap(False)
        # Fixed widths: ResizeToContents re-measures every row on every insert, which made a
        # burst of 1000 messages freeze the window for seconds.
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        # Time, topic, event and a name: narrow enough that the detail stays in view.
        for column, width in enumerate((64, 60, 64, 90)):
            header.resizeSection(column, width)
        header.setStretchLastSection(True)
        follow_bottom(self.table)
        self.member_list = QListWidget()
        self.graph = TopicGraph()
        side = QTabWidget()
        side.addTab(self.graph, "Graph")
        side.addTab(self.member_list, "Members")
        split = QSplitter()
        split.addWidget(self.table)
        split.addWidget(side)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.sparkline)
        layout.addLayout(controls)
        layout.addWidget(split, 1)
        self._topic_column()

    @property
    def alias(self) -> dict[str, str]:
        return self._alias

    @alias.setter
    def alias(self, names: dict[str, str]) -> None:
        """The names the window shows for peers: the timeline and the graph use them."""
        changed = names != self._alias
        self._alias = self.timeline.alias = self.graph.alias = names
        if changed and self.timeline.rows:
            column = self.timeline.COLUMNS.index("Peer")
            last = len(self.timeline.rows) - 1
            self.timeline.dataChanged.emit(
                self.timeline.index(0, column), self.timeline.index(last, column)
            )

    @property
    def topics(self) -> list[str]:
        return [self.topic_pick.itemText(i) for i in range(self.topic_pick.count())]

    def _add(self) -> None:
        topic = self.topic_input.text().strip()
        if topic:
            self.topic_input.clear()
            self.add_topic(topic)
            self.monitorRequested.emit(topic)

    def add_topic(self, topic: str) -> None:
        if topic not in self.topics:
            self.topic_pick.addItem(topic)
            self.members.setdefault(topic, {})
        self.topic_pick.setCurrentText(topic)
        self._topic_column()

    def _stop(self) -> None:
        topic = self.topic_pick.currentText()
        if topic:
            self.topic_pick.removeItem(self.topic_pick.currentIndex())
            self.unmonitorRequested.emit(topic)
        self._topic_column()

    def _topic_column(self) -> None:
        """With one topic watched its name says nothing the picker does not: its column
        goes, and the message text has the room."""
        self.table.setColumnHidden(self.timeline.COLUMNS.index("Topic"), len(self.topics) < 2)

    def _export(self) -> None:
        name, _ = QFileDialog.getSaveFileName(
            self, "Export timeline", str(Path.home() / "timeline.csv"), "CSV (*.csv);;JSON (*.json)"
        )
        if name:
            self.timeline.export(Path(name))

    def on_change(self, topic: str, peer: str, joined: bool) -> None:
        if topic not in self.topics:
            return
        now = time.time()
        members = self.members.setdefault(topic, {})
        if joined:
            members[peer] = now
        else:
            members.pop(peer, None)
        self.timeline.add(TimelineEvent(now, topic, "join" if joined else "leave", peer))
        if topic == self.topic_pick.currentText():
            self._show_members(topic)
            if joined:
                self.graph.joined(peer)
            else:
                self.graph.left(peer)

    def on_message(self, topic: str, peer: str, text: str) -> None:
        if topic not in self.topics:
            return
        self.rates.hit(topic)
        if topic == self.topic_pick.currentText():
            self.graph.message(peer)
        self.timeline.add(TimelineEvent(time.time(), topic, "message", peer, text[:120]))

    def set_members(self, topic: str, members: dict[str, float]) -> None:
        """The core's view (peer → joined at): it knows peers that were there before us."""
        self.members[topic] = dict(members)
        if topic == self.topic_pick.currentText():
            self._show_members(topic)
            self.graph.set_members(list(members), self.mesh.get(topic, set()))

    def set_mesh(self, topic: str, mesh: list[str]) -> None:
        self.mesh[topic] = set(mesh)

    def tick(self) -> None:
        topic = self.topic_pick.currentText()
        self.sparkline.set_values(self.rates.series(topic) if topic else [])

    def _show_topic(self, topic: str) -> None:
        self._show_members(topic)
        self.graph.show_topic(topic, list(self.members.get(topic, {})), self.mesh.get(topic, set()))
        self.tick()

    def _show_members(self, topic: str) -> None:
        self.member_list.clear()
        for peer, since in sorted(self.members.get(topic, {}).items(), key=lambda kv: kv[1]):
            stamp = time.strftime("%H:%M:%S", time.localtime(since))
            label = f"{self.alias.get(peer, '')} {short_id(peer)}".strip()
            self.member_list.addItem(f"{label} — since {stamp}")
