"""Every import and download of this session, as the Transfers pane lists them.

One row per job (an import of a dropped file, a save or open of a file, a get by CID): what it
is, how far it got, how fast it goes now, how long it has left, and how it ended. Speed is
measured over the last few seconds, not since the start, so a transfer that stalls says so
instead of showing the average of its good start. Jobs waiting their turn (the files of a
dropped folder go in one after another) are listed as queued and can be cancelled before
they start."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QDateTime, QModelIndex, Qt, Signal

from gui.models.files import human_size
from gui.models.rows import Index, RowsModel
from gui.transfer_log import KEPT, Record

SPEED_WINDOW = 5.0
"""Seconds of progress reports the speed is measured over."""
FRACTION_ROLE = Qt.ItemDataRole.UserRole + 1
"""The progress column's fraction done (0..1), or None when the total is unknown."""
STATE_ROLE = Qt.ItemDataRole.UserRole + 2
"""The job's state ('queued', 'running', 'done', 'failed', 'cancelled'), for the bar's look."""
ACTIVE = ("queued", "running")


@dataclass
class Transfer:
    op: str
    kind: str
    """'Import', 'Download' (from a peer) or 'Get' (by CID, from whoever has it)."""
    name: str
    cancel: Callable[[], object]
    total: int = 0
    """Bytes expected; 0 when unknown (a fetch learns the size as it goes)."""
    done: int = 0
    state: str = "queued"
    """'queued', 'running', 'done', 'failed' or 'cancelled'."""
    detail: str = ""
    where: str = ""
    """The local file, when there is one (a download's destination), for the tooltip."""
    started: float = 0.0
    ended: float = 0.0
    took: float = 0.0
    """Seconds from start to end, once ended (0 if it never started)."""
    ended_at: float = 0.0
    """When it ended, as a Unix time (what a restart still knows of it)."""
    samples: deque[tuple[float, int]] = field(default_factory=deque)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def speed(self, now: float) -> float | None:
        """Bytes per second over about the last ``SPEED_WINDOW`` seconds (None until
        measurable)."""
        if self.state != "running" or not self.samples:
            return None
        # Keep one report from before the window as its start: after a stall, the speed is
        # what came since the last report before it, over the whole stall.
        while len(self.samples) > 1 and now - self.samples[1][0] >= SPEED_WINDOW:
            self.samples.popleft()
        t0, d0 = self.samples[0]
        elapsed = now - t0
        return (self.done - d0) / elapsed if elapsed >= 0.5 else None

    def time_left(self, now: float) -> float | None:
        speed = self.speed(now)
        if not speed or self.total <= self.done:
            return None
        return (self.total - self.done) / speed

    @property
    def fraction(self) -> float | None:
        """Done, from 0 to 1; None while the total is unknown."""
        if self.state == "done":
            return 1.0
        return min(1.0, self.done / self.total) if self.total > 0 else None

    def amount_text(self) -> str:
        """ "42% · 12.0 of 28.5 MiB", or the bytes so far while the total is unknown: with
        ``pace_text``, what a progress bar outside the Transfers pane shows (the Files pane's
        rows), measured as the pane's columns are, so the two never disagree."""
        if self.total > 0:
            percent = 100 * min(self.done, self.total) // self.total
            return f"{percent}% · {_amount(self.done, self.total)}"
        return human_size(self.done) if self.done else "starting…"

    def pace_text(self, now: float) -> str:
        """ "6.1 MiB/s · 3 s left", each part once it is measurable."""
        parts = []
        speed = self.speed(now)
        if speed is not None:
            parts.append(rate_text(speed))
        left = self.time_left(now)
        if left is not None:
            parts.append(f"{duration_text(left)} left")
        return " · ".join(parts)


def duration_text(seconds: float) -> str:
    if seconds < 1:
        return "<1 s"  # "done in 0 s" read as if nothing had happened
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _amount(done: int, total: int) -> str:
    """ "12.0 of 200.0 MiB": the unit once when both sizes share it (a bar is narrow)."""
    done_text, total_text = human_size(done), human_size(total)
    number, _, unit = done_text.partition(" ")
    return (
        f"{number} of {total_text}"
        if total_text.endswith(f" {unit}")
        else (f"{done_text} of {total_text}")
    )


def rate_text(speed: float | None) -> str:
    return "" if speed is None else f"{human_size(int(speed))}/s"


def _nothing_to_cancel() -> None:
    """The cancel of a transfer from an earlier session: it has ended."""


class TransfersModel(RowsModel):
    COLUMNS = ["Name", "Kind", "Progress", "Speed", "Time left", "State"]
    endedChanged = Signal()
    """The finished transfers changed (one ended, or they were cleared): time to save them."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.clock = clock
        self.wall = wall
        self.rows: list[Transfer] = []

    # -- what the controller reports ----------------------------------------------------------

    def add(
        self,
        op: str,
        kind: str,
        name: str,
        cancel: Callable[[], object],
        *,
        total: int = 0,
        where: str = "",
    ) -> Transfer:
        """A new job, queued until ``start`` (newest first: it is the one the user just did)."""
        job = Transfer(op, kind, name, cancel, total=total, where=where)
        self.beginInsertRows(QModelIndex(), 0, 0)
        self.rows.insert(0, job)
        self.endInsertRows()
        return job

    def start(self, op: str) -> None:
        job = self.find(op)
        if job is not None and job.state == "queued":
            job.state, job.started = "running", self.clock()
            job.samples.append((job.started, 0))
            self._changed(job)

    def progress(self, op: str, done: int, total: int) -> None:
        job = self.find(op)
        if job is None or not job.active:
            return
        if job.state == "queued":
            self.start(op)
        job.done = done
        if total > 0:
            job.total = total
        job.samples.append((self.clock(), done))
        self._changed(job)

    def finish(self, op: str, state: str, detail: str = "", *, size: int | None = None) -> None:
        """How the job ended: 'done', 'failed' (``detail`` says why) or 'cancelled'. A get's
        answer can say it failed after its call returned: 'failed' overrides 'done'. ``size``: the
        bytes the job ended with, when known only then (a download's written file)."""
        job = self.find(op)
        if job is None or not (job.active or (job.state == "done" and state == "failed")):
            return
        if job.active:
            job.ended, job.ended_at = self.clock(), self.wall()
            job.took = job.ended - job.started if job.started else 0.0
        job.state, job.detail = state, detail
        if size is not None:
            job.done = job.total = size
        elif state == "done" and job.total:
            job.done = job.total
        self._changed(job)
        self.endedChanged.emit()

    def interrupt(self, reason: str) -> None:
        """The app is closing: what still runs or waits ends here, cancelled for ``reason``."""
        for job in [j for j in self.rows if j.active]:
            self.finish(job.op, "cancelled", reason)

    # -- what a restart keeps -----------------------------------------------------------------

    def ended(self) -> list[Record]:
        """The newest ``KEPT`` finished transfers, newest first, for the transfer log."""
        out = []
        for job in self.rows:
            if not job.active:
                out.append(
                    Record(
                        job.kind,
                        job.name,
                        job.state,
                        job.detail,
                        job.where,
                        job.done,
                        job.total,
                        job.took,
                        job.ended_at,
                    )
                )
                if len(out) == KEPT:
                    break
        return out

    def restore(self, records: list[Record]) -> None:
        """Transfers of earlier sessions, below this session's (they are older)."""
        if not records:
            return
        first = len(self.rows)
        self.beginInsertRows(QModelIndex(), first, first + len(records) - 1)
        for i, r in enumerate(records):
            self.rows.append(
                Transfer(
                    f"earlier:{first + i}",
                    r.kind,
                    r.name,
                    _nothing_to_cancel,
                    total=r.total,
                    done=r.done,
                    state=r.state,
                    detail=r.detail,
                    where=r.where,
                    took=r.took,
                    ended_at=r.ended_at,
                )
            )
        self.endInsertRows()

    # -- what the user does -------------------------------------------------------------------

    def cancel(self, row: int) -> None:
        """Cancel a running or queued job; the job's owner then reports it cancelled."""
        if 0 <= row < len(self.rows) and self.rows[row].active:
            self.rows[row].cancel()

    def clear_finished(self) -> None:
        self.beginResetModel()
        self.rows = [job for job in self.rows if job.active]
        self.endResetModel()
        self.endedChanged.emit()

    def tick(self) -> None:
        """Once a second: speeds and times left move on even without a new report."""
        running = [i for i, job in enumerate(self.rows) if job.state == "running"]
        if running:
            self.dataChanged.emit(self.index(min(running), 3), self.index(max(running), 4))

    def find(self, op: str) -> Transfer | None:
        return next((job for job in self.rows if job.op == op), None)

    def newest(self, kind: str, name: str) -> Transfer | None:
        return next((j for j in self.rows if j.kind == kind and j.name == name), None)

    @property
    def active_count(self) -> int:
        return sum(job.active for job in self.rows)

    def _changed(self, job: Transfer) -> None:
        row = self.rows.index(job)
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(self.COLUMNS) - 1))

    # -- what the view shows ------------------------------------------------------------------

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        job = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(job, col)
        if role == FRACTION_ROLE and col == 2:
            return job.fraction
        if role == STATE_ROLE:
            return job.state
        if role == Qt.ItemDataRole.ToolTipRole:
            return "\n".join(t for t in (job.name, job.where, job.detail, _ended(job)) if t)
        if role == Qt.ItemDataRole.UserRole:
            return job.op
        return None

    def _text(self, job: Transfer, col: int) -> str:
        now = self.clock()
        if col == 0:
            return job.name
        if col == 1:
            return job.kind
        if col == 2:
            if job.state == "failed":  # shown instead of the bar: an empty bar said nothing
                return f"Failed: {job.detail}" if job.detail else "Failed"
            if job.total > 0:
                percent = 100 * min(job.done, job.total) // job.total
                return f"{percent}% of {human_size(job.total)}"  # short: it is on the bar
            return human_size(job.done) if job.done else ""
        if col == 3:
            return rate_text(job.speed(now))
        if col == 4:
            left = job.time_left(now)
            return "" if left is None else duration_text(left)
        if job.state == "failed":
            return f"failed: {job.detail}" if job.detail else "failed"
        if job.state in ("done", "cancelled") and job.took:
            return f"{job.state} in {duration_text(job.took)}"
        return job.state


def _ended(job: Transfer) -> str:
    if job.active or not job.ended_at:
        return ""
    when = QDateTime.fromSecsSinceEpoch(int(job.ended_at)).toString("yyyy-MM-dd hh:mm:ss")
    return f"ended {when}"
