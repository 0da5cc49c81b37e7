"""The Transfers pane's memory across restarts: the newest ``KEPT`` finished transfers, in
``transfers.json`` in the profile folder.

Pure Python (no Qt), so it is tested on its own. The file is small (a few hundred short
records) and rewritten whole: into a temporary file beside it, flushed to disk, then renamed
over the old one, so a crash or a full disk leaves the previous log or the new one, never half
of either. The file is read as untrusted input: anything that does not parse is set aside as
``transfers.json.broken`` with a log line and the pane starts empty; a record with a wrong
field is skipped. Nothing here raises into the window.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FILE_NAME = "transfers.json"
KEPT = 200
"""Finished transfers kept (the newest); older ones are forgotten."""
VERSION = 1
ENDINGS = ("done", "failed", "cancelled")
MAX_TEXT = 4096
"""Characters kept of a name, path or reason (a hand-edited file cannot make rows huge)."""


@dataclass(frozen=True)
class Record:
    """One finished transfer, as the Transfers pane shows it after a restart."""

    kind: str
    name: str
    state: str
    """'done', 'failed' or 'cancelled'."""
    detail: str = ""
    where: str = ""
    done: int = 0
    total: int = 0
    took: float = 0.0
    """Seconds from start to end (0 when it never started)."""
    ended_at: float = 0.0
    """When it ended, as a Unix time."""


def load(folder: Path) -> list[Record]:
    """The kept transfers, newest first; [] when there are none or the file is unreadable."""
    path = folder / FILE_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("the transfer log %s cannot be read (%s): starting empty", path, exc)
        return []
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or not isinstance(doc.get("transfers"), list):
            raise ValueError("no list of transfers")
    except (ValueError, UnicodeDecodeError) as exc:
        log.warning("the transfer log %s is broken (%s): set aside, starting empty", path, exc)
        _set_aside(path)
        return []
    records = [r for r in map(_record, doc["transfers"][:KEPT]) if r is not None]
    return records


def save(folder: Path, records: list[Record]) -> bool:
    """Replace the log with ``records`` (newest first, the first ``KEPT`` kept). Returns
    False, after a log line, when the disk refused."""
    path = folder / FILE_NAME
    body = json.dumps(
        {"version": VERSION, "transfers": [asdict(r) for r in records[:KEPT]]},
        ensure_ascii=False,
        indent=0,
    ).encode()
    tmp = None
    try:
        with tempfile.NamedTemporaryFile(
            "wb", dir=folder, prefix=f".{FILE_NAME}.", suffix=".tmp", delete=False
        ) as fh:
            tmp = Path(fh.name)
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
        _sync_folder(folder)
        return True
    except OSError as exc:
        log.warning("the transfer log %s was not saved: %s", path, exc)
        return False
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _record(item: Any) -> Record | None:
    """A record from the file, or None when any field has the wrong type or range."""
    if not isinstance(item, dict):
        return None
    texts = {k: item.get(k, "") for k in ("kind", "name", "state", "detail", "where")}
    numbers = {k: item.get(k, 0) for k in ("done", "total", "took", "ended_at")}
    if not all(isinstance(v, str) for v in texts.values()):
        return None
    if not all(type(v) in (int, float) and math.isfinite(v) and v >= 0 for v in numbers.values()):
        return None
    if texts["state"] not in ENDINGS or not texts["kind"] or not texts["name"]:
        return None
    return Record(
        **{k: v[:MAX_TEXT] for k, v in texts.items()},
        done=int(numbers["done"]),
        total=int(numbers["total"]),
        took=float(numbers["took"]),
        ended_at=float(numbers["ended_at"]),
    )


def _set_aside(path: Path) -> None:
    try:
        os.replace(path, path.with_name(path.name + ".broken"))
    except OSError as exc:
        log.warning("could not set the broken transfer log aside: %s", exc)


def _sync_folder(folder: Path) -> None:
    """The rename itself on disk too (a crash right after must not bring the old file back)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
