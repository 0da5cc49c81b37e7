"""The Qt models on their own: lazy file trees, the monitor's timeline and rates, chat input."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QModelIndex

from gui.models.files import BATCH, FilesModel
from gui.panes.chat import parse_input, render
from gui.panes.monitor import RATE_SECONDS, RateCounter, TimelineEvent, TimelineModel


def test_big_folder_is_handed_to_the_view_in_batches(qapp: Any) -> None:
    entries = {"big": {"type": "directory", "cid": "Qm-dir"}}
    entries.update(
        {f"big/f{i:06d}.txt": {"type": "file", "cid": f"c{i}", "size": i} for i in range(100_000)}
    )
    entries["z.txt"] = {"type": "file", "cid": "cz", "mimeType": "text/plain"}
    model = FilesModel()
    model.set_listing("Qm-root", entries, read_only=True)
    assert model.rowCount() == 0 and model.canFetchMore(QModelIndex())
    model.fetchMore(QModelIndex())
    assert model.rowCount() == 2  # folders first
    big = model.index(0, 0)
    assert model.data(big) == "big" and model.hasChildren(big)
    assert model.rowCount(big) == 0
    model.fetchMore(big)
    assert model.rowCount(big) == BATCH
    deep = model.index_of("big/f099999.txt")  # fetches batches up to it
    assert deep.isValid() and model.node(deep).cid == "c99999"
    assert model.rowCount(big) == 100_000
    assert model.folder_for(deep) == "big" and model.folder_for(QModelIndex()) == ""


def test_timeline_pause_holds_events_and_export(qapp: Any, tmp_path: Path) -> None:
    model = TimelineModel()
    model.add(TimelineEvent(1.0, "t", "join", "p1"))
    model.set_paused(True)
    model.add(TimelineEvent(2.0, "t", "message", "p1", "hi"))
    assert model.rowCount() == 1
    model.set_paused(False)
    assert [e.kind for e in model.rows] == ["join", "message"]
    model.export(tmp_path / "t.json")
    assert json.loads((tmp_path / "t.json").read_text())[1]["detail"] == "hi"
    model.export(tmp_path / "t.csv")
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert [r["kind"] for r in rows] == ["join", "message"]
    model.clear()
    assert model.rowCount() == 0


def test_rate_counter_buckets_per_second() -> None:
    rates = RateCounter()
    for at in (100.1, 100.5, 101.0, 101.9, 101.95):
        rates.hit("t", at)
    series = rates.series("t", now=101.99)
    assert len(series) == RATE_SECONDS and series[-2:] == [2, 3]
    assert rates.series("other", now=101.0) == [0] * RATE_SECONDS


def test_chat_input_and_rendering() -> None:
    assert parse_input('{"text": "hi"}') == {"text": "hi"}
    assert parse_input("42") == 42
    assert parse_input("plain words") == "plain words"
    assert render({"text": "hi"}) == "hi"
    assert render({"a": 1}) == '{"a": 1}'
