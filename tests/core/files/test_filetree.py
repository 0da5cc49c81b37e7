"""The file tree's FileList answer: entries carry the sizes the DAG already knows."""

from __future__ import annotations

import json
import os
from pathlib import Path

from core.files.blockstore import BlockStore
from core.files.filetree import FileTree
from core.files.sharing import _clean_entries


async def test_listing_entries_carry_file_sizes(tmp_path: Path) -> None:
    """A file entry's ``size`` is its UnixFS filesize (a multi-level DAG here: 175 chunks
    and a bit), the empty file says 0, folders carry none (their Tsize counts blocks)."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(175 * 262144 + 5))
    with BlockStore(tmp_path / "blocks.sqlite") as store:
        tree = FileTree(store)
        await tree.store_file("docs/readme.txt", b"hello world\n")
        await tree.store_file("docs/empty", b"")
        await tree.store_file("big.bin", big)
        entries = json.loads(json.dumps((await tree.listing())["entries"]))  # as sent
    assert entries["docs/readme.txt"]["size"] == 12
    assert entries["docs/empty"]["size"] == 0
    assert entries["big.bin"]["size"] == 175 * 262144 + 5
    assert entries["docs"] == {"type": "directory", "cid": entries["docs"]["cid"]}
    # What a receiving peer keeps of it: the same entries, sizes included.
    assert _clean_entries(entries) == entries


def test_a_remote_size_that_is_not_a_byte_count_is_dropped() -> None:
    base = {"type": "file", "cid": "bafy", "mimeType": "text/plain"}
    for bad in (-1, True, "12", 1.5, 2**64, None, [1]):
        assert _clean_entries({"f": {**base, "size": bad}}) == {"f": base}
    assert _clean_entries({"d": {"type": "directory", "cid": "Qm", "size": 5}}) == {
        "d": {"type": "directory", "cid": "Qm"}
    }
