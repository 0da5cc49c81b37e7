"""The desktop after Leave → Join: chat works at once and the members list is right (issue 8).
A real window with its real core, and a second real peer on its own core thread."""

from __future__ import annotations

from typing import Any

from core import events as ev
from tests.gui.test_gui import WAIT_MS, OtherPeer, app, my_addr, other, qloop  # noqa: F401  (fixtures)


def test_leave_join_then_chat_at_once(app: Any, other: OtherPeer, qtbot: Any) -> None:  # noqa: F811
    window = app.window
    other.call(other.peer.connect, my_addr(app))
    window.join_topic("lobby")
    other.call(other.peer.topics.subscribe, "lobby", 5.0)
    qtbot.waitUntil(lambda: other.id in window.topics.members.get("lobby", []), timeout=WAIT_MS)

    window.leave_topic("lobby")
    qtbot.waitUntil(lambda: "lobby" not in app.bridge.peer.topics.subscribed, timeout=WAIT_MS)
    window.join_topic("lobby")
    qtbot.waitUntil(lambda: "lobby" in app.bridge.peer.topics.subscribed, timeout=WAIT_MS)

    # The members list is right again (the other peer arrives as a join after the rejoin).
    qtbot.waitUntil(lambda: other.id in window.topics.members.get("lobby", []), timeout=3000)

    other.call(other.peer.publish, "lobby", {"text": "still here?"})
    view = window._conversation("topic:lobby")
    assert view is not None
    qtbot.waitUntil(lambda: any(m.sender == other.id for m in view.model.messages), timeout=3000)

    view.input.setText("yes")
    view._submit()
    qtbot.waitUntil(
        lambda: any(isinstance(e, ev.TopicData) and e.data == "yes" for e in list(other.events)),
        timeout=3000,
    )
