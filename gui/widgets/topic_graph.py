"""The live graph of a topic: this peer in the middle, the topic's peers around it, which of
them are in our GossipSub mesh (they get every message in full) and which only hear gossip
(message ids, asking for what they miss), messages flowing in along the links, joins and
leaves as they happen.

Painted with QPainter from plain state; a timer runs only while something is animating."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QWidget

from gui.panes.peers import short_id

FRAME_MS = 33
FLOW_SECONDS = 0.7
PULSE_SECONDS = 1.2
MAX_NODES = 36
MESH = QColor("#1a5fb4")
GOSSIP = QColor("#9a9996")
JOIN = QColor("#26a269")
LEAVE = QColor("#c01c28")


@dataclass
class Flow:
    peer: str
    started: float


class TopicGraph(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.topic = ""
        self.members: list[str] = []
        self.mesh: set[str] = set()
        self.alias: dict[str, str] = {}
        self.pulses: dict[str, tuple[str, float]] = {}
        """peer → ("join" | "leave", when): a ring that fades; a leaving peer fades out."""
        self.flows: list[Flow] = []
        self._timer = QTimer(self)
        self._timer.setInterval(FRAME_MS)
        self._timer.timeout.connect(self._frame)
        self.setMinimumSize(140, 110)

    def sizeHint(self) -> QSize:
        return QSize(260, 200)

    # -- state --------------------------------------------------------------------------------

    def show_topic(self, topic: str, members: list[str], mesh: set[str]) -> None:
        if topic != self.topic:
            self.pulses.clear()
            self.flows.clear()
        self.topic = topic
        self.set_members(members, mesh)

    def set_members(self, members: list[str], mesh: set[str]) -> None:
        self.members = sorted(members)
        self.mesh = set(mesh)
        self.update()

    def joined(self, peer: str) -> None:
        if peer not in self.members:
            self.members = sorted([*self.members, peer])
        self._pulse(peer, "join")

    def left(self, peer: str) -> None:
        self._pulse(peer, "leave")  # stays drawn, fading, until the pulse ends

    def message(self, peer: str) -> None:
        if peer in self.members:
            self.flows.append(Flow(peer, time.monotonic()))
            del self.flows[:-50]
            self._animate()

    def _pulse(self, peer: str, kind: str) -> None:
        self.pulses[peer] = (kind, time.monotonic())
        self._animate()

    def _animate(self) -> None:
        if not self._timer.isActive():
            self._timer.start()
        self.update()

    def _frame(self) -> None:
        now = time.monotonic()
        self.flows = [f for f in self.flows if now - f.started < FLOW_SECONDS]
        for peer, (kind, at) in list(self.pulses.items()):
            if now - at >= PULSE_SECONDS:
                del self.pulses[peer]
                if kind == "leave" and peer in self.members:
                    self.members = [m for m in self.members if m != peer]
                    self.mesh.discard(peer)
        if not self.flows and not self.pulses:
            self._timer.stop()
        self.update()

    # -- painting -----------------------------------------------------------------------------

    def positions(self) -> dict[str, QPointF]:
        shown = self.members[:MAX_NODES]
        centre = QPointF(self.width() / 2, self.height() / 2 + 8)
        # An ellipse as wide as the widget: the monitor's bottom dock is wide and short.
        rx = max(20.0, self.width() / 2 - 60)
        ry = max(14.0, (self.height() - 16) / 2 - 24)
        out = {}
        for i, peer in enumerate(shown):
            angle = math.pi + 2 * math.pi * i / max(1, len(shown))  # the first on the left
            out[peer] = QPointF(
                centre.x() + rx * math.cos(angle), centre.y() + ry * math.sin(angle)
            )
        return out

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor("#fafafa"))
        now = time.monotonic()
        centre = QPointF(self.width() / 2, self.height() / 2 + 8)
        places = self.positions()
        for peer, point in places.items():
            pen = QPen(MESH, 2) if peer in self.mesh else QPen(GOSSIP, 1, Qt.PenStyle.DashLine)
            painter.setPen(pen)
            painter.drawLine(centre, point)
        for flow in self.flows:
            start = places.get(flow.peer)
            if start is None:
                continue
            t = (now - flow.started) / FLOW_SECONDS
            dot = QPointF(
                start.x() + (centre.x() - start.x()) * t, start.y() + (centre.y() - start.y()) * t
            )
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor("#e66100"))
            painter.drawEllipse(dot, 4, 4)
        small = painter.font()
        small.setPointSizeF(max(6.0, small.pointSizeF() * 0.85))
        painter.setFont(small)
        for peer, point in places.items():
            colour = MESH if peer in self.mesh else GOSSIP
            pulse = self.pulses.get(peer)
            if pulse is not None:
                kind, at = pulse
                fade = min(1.0, (now - at) / PULSE_SECONDS)
                ring = QColor(JOIN if kind == "join" else LEAVE)
                ring.setAlphaF(1 - fade)
                painter.setPen(QPen(ring, 3))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawEllipse(point, 8 + 10 * fade, 8 + 10 * fade)
                if kind == "leave":
                    colour = QColor(LEAVE)
                    colour.setAlphaF(1 - fade)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(colour)
            painter.drawEllipse(point, 6, 6)
            painter.setPen(QColor("#333"))
            label = self.alias.get(peer) or short_id(peer)
            painter.drawText(
                QRectF(point.x() - 60, point.y() + 7, 120, 14),
                Qt.AlignmentFlag.AlignHCenter,
                painter.fontMetrics().elidedText(label, Qt.TextElideMode.ElideMiddle, 110),
            )
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor("#333"))
        painter.drawEllipse(centre, 8, 8)
        painter.setPen(QColor("#555"))
        if not self.topic:
            text = "monitor a topic to see its peers"
        elif not self.members:
            text = f"{self.topic}: no peers yet"
        else:
            more = len(self.members) - len(places)
            text = (
                f"{len(self.mesh & set(self.members))} mesh · "
                f"{len(set(self.members) - self.mesh)} gossip only"
                + (f" · {more} more not drawn" if more > 0 else "")
            )
        painter.drawText(QRectF(4, 2, self.width() - 8, 14), Qt.AlignmentFlag.AlignLeft, text)
        painter.end()
