"""The Transfers pane's model on its own, with a clock the test moves: progress, speed over
the last seconds (a stall shows as a stall), time left, and how each job ended."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import Qt

from gui.models.transfers import FRACTION_ROLE, TransfersModel

MIB = 1048576


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def cell(model: TransfersModel, row: int, column: str, role: int = 0) -> Any:
    return model.data(model.index(row, model.COLUMNS.index(column)), role)


def test_progress_speed_time_left_and_outcome(qapp: Any) -> None:
    clock = Clock()
    model = TransfersModel(clock)
    model.add("op1", "Import", "big.iso", lambda: None, total=100 * MIB)
    assert cell(model, 0, "State") == "queued" and cell(model, 0, "Speed") == ""
    model.start("op1")
    for _ in range(4):
        clock.now += 1
        model.progress("op1", model.rows[0].done + 10 * MIB, 100 * MIB)
    assert cell(model, 0, "Progress") == "40% of 100.0 MiB"
    assert cell(model, 0, "Progress", FRACTION_ROLE) == pytest.approx(0.4)
    assert cell(model, 0, "Speed") == "10.0 MiB/s"
    assert cell(model, 0, "Time left") == "6 s"
    # A stall: no report for 10 s. Speed is measured over the last seconds, so it drops.
    clock.now += 10
    model.progress("op1", 41 * MIB, 100 * MIB)
    assert cell(model, 0, "Speed") == "102.4 KiB/s"
    assert cell(model, 0, "Time left") == "10 min"
    clock.now += 1
    model.finish("op1", "done")
    assert cell(model, 0, "State") == "done in 15 s" and cell(model, 0, "Speed") == ""
    assert cell(model, 0, "Progress", FRACTION_ROLE) == 1.0
    assert model.active_count == 0


def test_unknown_total_shows_bytes_and_no_time_left(qapp: Any) -> None:
    clock = Clock()
    model = TransfersModel(clock)
    model.add("get", "Get", "bafy…", lambda: None)
    model.start("get")
    clock.now += 2
    model.progress("get", 3 * MIB, 0)
    assert cell(model, 0, "Progress") == "3.0 MiB"
    assert cell(model, 0, "Progress", FRACTION_ROLE) is None
    assert cell(model, 0, "Speed") == "1.5 MiB/s" and cell(model, 0, "Time left") == ""


def test_cancel_reaches_only_active_jobs_and_clear_keeps_them(qapp: Any) -> None:
    cancelled: list[str] = []
    model = TransfersModel(Clock())
    for op in ("a", "b", "c"):
        model.add(op, "Download", f"{op}.bin", lambda op=op: cancelled.append(op))
    model.start("a")
    model.finish("c", "failed", "no peer has it")
    rows = {job.op: i for i, job in enumerate(model.rows)}
    for op in ("a", "b", "c"):
        model.cancel(rows[op])
    assert cancelled == ["a", "b"]  # the failed one has nothing left to cancel
    assert cell(model, rows["c"], "State") == "failed: no peer has it"
    tooltip = cell(model, rows["c"], "Name", Qt.ItemDataRole.ToolTipRole).split("\n")
    assert tooltip[:2] == ["c.bin", "no peer has it"] and tooltip[2].startswith("ended 20")
    model.finish("a", "cancelled")
    model.clear_finished()
    assert [job.op for job in model.rows] == ["b"]


def test_a_later_failure_overrides_done_but_nothing_else(qapp: Any) -> None:
    model = TransfersModel(Clock())
    model.add("g", "Get", "bafyx", lambda: None)
    model.start("g")
    model.finish("g", "done")
    model.finish("g", "failed", "not found")
    assert model.rows[0].state == "failed"
    model.finish("g", "done")
    model.finish("g", "cancelled")
    assert model.rows[0].state == "failed"


def test_the_bar_texts_read_the_same_speed_and_time_left_as_the_columns(qapp: Any) -> None:
    clock = Clock()
    model = TransfersModel(clock)
    model.add("get", "Get", "bafy…", lambda: None)
    job = model.rows[0]
    assert (job.amount_text(), job.pace_text(clock.now)) == ("starting…", "")
    model.start("get")
    clock.now += 2
    model.progress("get", 3 * MIB, 0)
    # no size known: no time left
    assert (job.amount_text(), job.pace_text(clock.now)) == ("3.0 MiB", "1.5 MiB/s")
    clock.now += 1
    model.progress("get", 4 * MIB, 1000 * MIB)
    speed, left = cell(model, 0, "Speed"), cell(model, 0, "Time left")
    assert (speed, left) == ("1.3 MiB/s", "12 min")
    assert job.amount_text() == "0% · 4.0 of 1000.0 MiB"
    assert job.pace_text(clock.now) == f"{speed} · {left} left"
    model.progress("get", 900 * 1024, 2 * MIB)
    assert job.amount_text() == "43% · 900.0 KiB of 2.0 MiB"  # units differ: both said


def test_finished_jobs_are_kept_with_how_they_ended_and_restored_below_new_ones(
    qapp: Any,
) -> None:
    clock = Clock()
    model = TransfersModel(clock, wall=lambda: 1_700_000_000.0)
    model.add("a", "Import", "a.bin", lambda: None, total=10)
    model.add("b", "Get", "bafyb", lambda: None)
    model.add("c", "Download", "c.bin", lambda: None, where="/home/u/c.bin")
    model.start("a")
    clock.now += 3
    model.finish("a", "done")
    model.finish("b", "cancelled")  # never started: no duration
    model.start("c")
    kept = model.ended()
    assert [(r.name, r.state, r.took, r.ended_at) for r in kept] == [
        ("bafyb", "cancelled", 0.0, 1_700_000_000.0),
        ("a.bin", "done", 3.0, 1_700_000_000.0),
    ]
    model.interrupt("stopped: Peerdesk was closed")  # the running one ends too
    assert model.ended()[0].detail == "stopped: Peerdesk was closed"

    again = TransfersModel(Clock())
    again.add("new", "Import", "new.bin", lambda: None)
    again.restore(model.ended())
    assert [j.name for j in again.rows] == ["new.bin", "c.bin", "bafyb", "a.bin"]
    assert cell(again, 3, "State") == "done in 3 s" and cell(again, 3, "Progress") == "100% of 10 B"
    assert cell(again, 1, "Name", Qt.ItemDataRole.ToolTipRole).startswith("c.bin\n/home/u/c.bin")
    again.cancel(1)  # an earlier session's: nothing to cancel, nothing happens
    assert again.active_count == 1
    again.clear_finished()
    assert [j.name for j in again.rows] == ["new.bin"] and again.ended() == []
