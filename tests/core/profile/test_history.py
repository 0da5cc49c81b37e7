"""The profile's message history: survives reopening, bounded per conversation, searchable."""

from __future__ import annotations

from pathlib import Path

from core.profile import history as history_mod
from core.profile.history import History


def test_messages_and_state_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    h = History(path)
    first = h.add("topic:lobby", "12D3KooWA", {"text": "hello"}, 100.0)
    mine = h.add("peer:12D3KooWA", "", "psst", 101.0, mine=True, status="sending")
    h.set_status(mine, "delivered", "m-1")
    h.set_state("topics", ["lobby", "news"])
    h.close()

    again = History(path)
    lobby = again.recent("topic:lobby")
    assert [(m.id, m.sender, m.value, m.at) for m in lobby] == [
        (first, "12D3KooWA", {"text": "hello"}, 100.0)
    ]
    [dm] = again.recent("peer:12D3KooWA")
    assert dm.mine and dm.status == "delivered" and dm.msg_id == "m-1" and dm.value == "psst"
    assert again.get_state("topics") == ["lobby", "news"]
    assert again.get_state("missing", []) == []
    again.close()


def test_uncommitted_messages_are_not_kept(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    h = History(path)
    h.add("topic:t", "p", "kept", 1.0)
    h.commit()
    h.add("topic:t", "p", "lost", 2.0)
    h.db.rollback()
    h.close()
    assert [m.value for m in History(path).recent("topic:t")] == ["kept"]


def test_each_conversation_is_bounded(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(history_mod, "PRUNE_EVERY", 10)
    h = History(tmp_path / "h.sqlite", keep=25)
    for i in range(100):
        h.add("topic:busy", "p", f"m{i}", float(i))
    h.add("topic:quiet", "p", "only one", 0.0)
    h.commit()
    assert 25 <= h.count("topic:busy") < 25 + 10
    assert h.recent("topic:busy", 1)[0].value == "m99"
    assert h.count("topic:quiet") == 1


def test_search_is_a_case_insensitive_substring_match(tmp_path: Path) -> None:
    h = History(tmp_path / "h.sqlite")
    h.add("topic:a", "p", "The Quick fox", 1.0)
    h.add("topic:b", "p", {"text": "a quick reply"}, 2.0)
    h.add("topic:b", "p", "100% sure_thing", 3.0)
    h.add("topic:b", "p", "nothing here", 4.0)
    assert [m.at for m in h.search("quick")] == [2.0, 1.0]
    assert [m.at for m in h.search("quick", conv="topic:a")] == [1.0]
    assert [m.at for m in h.search("0% s")] == [3.0]
    assert h.search("_") and not h.search("%x")


def test_a_broken_file_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    h = History(path)
    h.add("topic:t", "p", "new", 1.0)
    h.close()
    assert (tmp_path / "history.sqlite.broken").exists()
    assert [m.value for m in History(path).recent("topic:t")] == ["new"]
