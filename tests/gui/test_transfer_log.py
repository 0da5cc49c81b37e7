"""The transfer log on its own, in a real temporary profile folder: what is kept, that a
write is atomic, and that a broken or hostile file never crashes the window (it starts
empty, says so in the log, and the broken file is set aside)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from gui import transfer_log
from gui.transfer_log import FILE_NAME, KEPT, Record, load, save


def records(n: int) -> list[Record]:
    return [
        Record("Import", f"file-{i}.bin", "done", "", f"/tmp/{i}", i, i, 1.5, 1_700_000_000 + i)
        for i in range(n)
    ]


def test_saved_records_come_back_newest_first_and_at_most_kept(tmp_path: Path) -> None:
    assert load(tmp_path) == []  # no file yet: nothing, no complaint
    assert save(tmp_path, records(KEPT + 50))
    back = load(tmp_path)
    assert back == records(KEPT)
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]  # no temporary file left


def test_a_failed_write_leaves_the_previous_log_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    save(tmp_path, records(3))

    def disk_full(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(transfer_log.os, "replace", disk_full)
    with caplog.at_level(logging.WARNING):
        assert not save(tmp_path, records(10))
    assert "not saved" in caplog.text
    monkeypatch.undo()
    assert load(tmp_path) == records(3)
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b"\xff\xfe", b"[1, 2]", b'{"transfers": 5}', b"null", b"1e999999"],
)
def test_a_broken_file_starts_empty_with_a_log_line_and_is_set_aside(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / FILE_NAME).write_bytes(content)
    with caplog.at_level(logging.WARNING):
        assert load(tmp_path) == []
    assert "broken" in caplog.text
    assert (tmp_path / f"{FILE_NAME}.broken").read_bytes() == content
    assert save(tmp_path, records(1)) and load(tmp_path) == records(1)


def test_records_with_wrong_fields_are_skipped_and_the_rest_kept(tmp_path: Path) -> None:
    good = {"kind": "Get", "name": "bafy", "state": "failed", "detail": "not found"}
    bad = [
        "a string",
        {**good, "state": "running"},  # only endings are kept
        {**good, "name": 42},
        {**good, "done": -1},
        {**good, "total": float("nan")},
        {**good, "took": True},
        {**good, "name": ""},
    ]
    text = json.dumps({"version": 1, "transfers": [*bad, good, {**good, "name": "x" * 10**5}]})
    (tmp_path / FILE_NAME).write_text(text)
    back = load(tmp_path)
    assert [r.name for r in back] == ["bafy", "x" * transfer_log.MAX_TEXT]
    assert back[0] == Record("Get", "bafy", "failed", "not found")


def test_an_unreadable_log_is_no_crash(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / FILE_NAME).mkdir()  # a folder where the file should be
    with caplog.at_level(logging.WARNING):
        assert load(tmp_path) == []
        assert not save(tmp_path, records(1))
    assert "cannot be read" in caplog.text and "not saved" in caplog.text
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    os.rmdir(tmp_path / FILE_NAME)
