"""The window and its panes against the in-memory client (tests/fake_client.py): what each
pane shows for a given peer state and which client calls each user action makes, without a
network (the end-to-end tests with real peers are in test_gui.py)."""

from __future__ import annotations

import asyncio
import inspect
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("PySide6")

import qasync
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from core import events as ev
from core.snapshots import (
    Connection,
    Contact,
    FileEntry,
    FileListing,
    NetworkState,
    TopicMember,
    TopicMembers,
    TopicStats,
    peer_info,
)
from gui.client import NotDelivered, PeerClient, ProfileClient
from gui.panes.peers import short_id
from tests.fake_client import ME, FakeClient, FakeProfile

WAIT_MS = 10_000
ALICE = "12D3KooWAbcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTU"
BOB = "12D3KooWBbcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTU"


@pytest.fixture(scope="session")
def qloop(qapp: Any) -> Iterator[asyncio.AbstractEventLoop]:
    """The qasync loop another GUI test file already set, or a new one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_event_loop()
        except RuntimeError:
            current = None
    if isinstance(current, qasync.QEventLoop):
        yield current
        return
    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.set_event_loop(loop)
    yield loop


@pytest.fixture
def client(qloop: Any) -> FakeClient:
    return FakeClient()


@pytest.fixture
def window(qtbot: Any, client: FakeClient, tmp_path: Path) -> Iterator[Any]:
    from gui.mainwindow import MainWindow
    from gui.panes.log import LogView, QtLogHandler

    win = MainWindow(client, tmp_path, LogView(QtLogHandler()))
    qtbot.addWidget(win)
    win.show()
    yield win
    win.info_timer.stop()
    win.close()


def connection(peer: str, *, contact: bool = False, latency: float | None = 12.5) -> Connection:
    return Connection(
        peer=peer,
        addrs=(f"/ip4/127.0.0.1/tcp/5000/p2p/{peer}",),
        direction="outbound",
        kind="direct",
        links=(),
        latency_ms=latency,
        protocols=("/chat/1.0.0",),
        contact=contact,
        since=1.0,
    )


def online(client: FakeClient, qtbot: Any, window: Any) -> None:
    client.go_online()
    qtbot.waitUntil(lambda: window.state is not None, timeout=WAIT_MS)


# -- the interface ----------------------------------------------------------------------------


def _members(protocol: type) -> dict[str, Any]:
    return {
        name: value
        for name, value in vars(protocol).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    }


@pytest.mark.parametrize("protocol", [PeerClient, ProfileClient])
def test_fake_and_bridge_implement_the_interface(protocol: type) -> None:
    """Same names, parameters and sync/async as the protocol: the fake cannot drift away from
    what the bridge does, nor the bridge from what the window calls."""
    from gui.bridge import CoreBridge, ProfileAccess

    impls = (FakeClient, CoreBridge) if protocol is PeerClient else (FakeProfile, ProfileAccess)
    members = _members(protocol)
    assert members  # the protocol's own members were found
    for impl in impls:
        for name, member in members.items():
            assert hasattr(impl, name), f"{impl.__name__} has no {name}"
            if isinstance(member, property):
                continue
            mine = inspect.getattr_static(impl, name)
            assert inspect.iscoroutinefunction(mine) == inspect.iscoroutinefunction(member), name
            want = list(inspect.signature(member).parameters)
            assert list(inspect.signature(mine).parameters) == want, f"{impl.__name__}.{name}"


def test_peer_info_is_converted_once_into_frozen_snapshots() -> None:
    raw = {
        "peerid": ME,
        "alias": "",
        "addrs": ["/ip4/127.0.0.1/tcp/1"],
        "reachability": "private",
        "relay_addrs": [],
        "relay_service": False,
        "protocols": ["/chat/1.0.0"],
        "connections": [
            {
                "peer": ALICE,
                "addrs": ["/ip4/127.0.0.1/tcp/2"],
                "direction": "inbound",
                "kind": "relayed",
                "links": [
                    {"addrs": ["/ip4/127.0.0.1/tcp/2"], "direction": "inbound", "kind": "relayed"}
                ],
                "latency_ms": 3,
                "protocols": ["/ipfs/id/1.0.0"],
                "contact": True,
                "since": None,
            }
        ],
        "topics": ["lobby"],
        "monitored": [],
        "dht_ready": True,
        "routing_table": 4,
        "mdns": False,
        "contacts": {BOB: ["/ip4/10.0.0.2/tcp/4001"]},
    }
    info = peer_info(raw)
    assert info.connections[0].latency_ms == 3.0 and info.connections[0].links[0].kind == "relayed"
    assert info.contact(BOB) == Contact(BOB, ("/ip4/10.0.0.2/tcp/4001",))
    assert info.topics == ("lobby",) and info.dht_ready and info.routing_table == 4
    raw["connections"][0]["peer"] = BOB  # the core's dict changing later changes nothing here
    assert info.connections[0].peer == ALICE
    with pytest.raises(AttributeError):
        info.peer_id = "other"  # type: ignore[misc]


# -- the window -------------------------------------------------------------------------------


def test_online_rejoins_remembered_topics_and_monitors(
    window: Any, client: FakeClient, qtbot: Any
) -> None:
    window.join_topic("lobby")
    window.monitor.add_topic("watched")
    assert "subscribe" not in client.names()  # no peer yet: joined when it starts
    online(client, qtbot, window)
    qtbot.waitUntil(lambda: ("monitor", "watched") in client.calls, timeout=WAIT_MS)
    assert ("subscribe", "lobby") in client.calls
    assert window.peer_id == ME and window.files.own_id == ME


def test_refresh_fills_the_panes_from_one_snapshot(
    window: Any, client: FakeClient, qtbot: Any
) -> None:
    info = replace(
        client.network.info,
        connections=(connection(ALICE, contact=True),),
        contacts=(Contact(ALICE, ()), Contact(BOB, ("/ip4/10.0.0.2/tcp/4001",))),
        dht_ready=True,
        mdns=True,
    )
    client.network = NetworkState(
        info,
        (TopicMembers("lobby", (ALICE,)),),
        (TopicStats("watched", (TopicMember(ALICE, 5.0),), (ALICE,)),),
    )
    window.topics.add_topic("lobby")
    window.monitor.add_topic("watched")
    online(client, qtbot, window)
    assert window.state_label.text() == "Online — 1 peer · DHT ready · LAN discovery on"
    rows = {r.peer: r for r in window.peers_model.rows}
    assert rows[ALICE].connected and rows[ALICE].latency_ms == 12.5 and rows[ALICE].contact
    assert not rows[BOB].connected and rows[BOB].addrs == ["/ip4/10.0.0.2/tcp/4001"]
    assert window.peers.own_id == ME
    assert window.topics.members["lobby"] == [ALICE]
    assert window.monitor.members["watched"] == {ALICE: 5.0}
    assert window.monitor.mesh["watched"] == {ALICE}
    assert window.files_pane.source.findData(ALICE) >= 0  # a connected peer's files offered
    assert window.files_pane.source.findData(BOB) < 0


def test_monitor_members_unknown_yet_are_not_cleared(
    window: Any, client: FakeClient, qtbot: Any
) -> None:
    window.monitor.add_topic("watched")
    window.monitor.set_members("watched", {ALICE: 1.0})
    client.network = replace(client.network, monitored=(TopicStats("watched", None, ()),))
    online(client, qtbot, window)
    assert window.monitor.members["watched"] == {ALICE: 1.0}


def test_publish_that_reached_nobody_is_marked_unheard(
    window: Any, client: FakeClient, qtbot: Any
) -> None:
    online(client, qtbot, window)
    client.publish_reach = 0
    view = window.open_topic("empty")
    view.send_value({"text": "anyone?"})
    qtbot.waitUntil(lambda: view.model.messages[0].status == "unheard", timeout=WAIT_MS)
    assert ("publish", "empty", {"text": "anyone?"}) in client.calls


def test_direct_message_delivered_or_failed_with_the_reason(
    window: Any, client: FakeClient, qtbot: Any
) -> None:
    online(client, qtbot, window)
    view = window.open_direct(ALICE)
    view.send_value("hi")
    qtbot.waitUntil(lambda: view.model.messages[0].status == "delivered", timeout=WAIT_MS)
    assert view.model.messages[0].msg_id == "msg-1"
    client.send_error = NotDelivered("no acknowledgement")
    view.send_value("again")
    qtbot.waitUntil(lambda: view.model.messages[1].status == "failed", timeout=WAIT_MS)
    assert "no acknowledgement" in window.statusBar().currentMessage()


def test_messages_before_the_peer_runs_are_not_sent(window: Any, client: FakeClient) -> None:
    view = window.open_direct(ALICE)
    view.send_value("too early")
    assert view.model.messages[0].status == "failed" and "send" not in client.names()


def test_incoming_events_open_conversations_and_count_unread(
    window: Any, client: FakeClient, qtbot: Any
) -> None:
    online(client, qtbot, window)
    window.topics.add_topic("lobby")
    client.event_received.emit(ev.TopicData("lobby", ALICE, {"text": "hello"}))
    qtbot.waitUntil(lambda: window._conversation("topic:lobby") is not None, timeout=WAIT_MS)
    view = window._conversation("topic:lobby")
    assert [m.value for m in view.model.messages] == [{"text": "hello"}]
    client.event_received.emit(ev.PeerData(BOB, "/chat/1.0.0", "psst"))
    qtbot.waitUntil(lambda: window._conversation(f"peer:{BOB}") is not None, timeout=WAIT_MS)


def test_connect_checks_the_text_then_dials_or_keeps_a_contact(
    window: Any, client: FakeClient, qtbot: Any
) -> None:
    online(client, qtbot, window)
    window.connect_to("not a peer")
    assert "neither a multiaddr" in window.statusBar().currentMessage()
    assert "dial" not in client.names() and "add_contacts" not in client.names()
    window.connect_to(f"/ip4/127.0.0.1/tcp/5000/p2p/{ALICE}")
    qtbot.waitUntil(lambda: "Connected to" in window.statusBar().currentMessage(), timeout=WAIT_MS)
    window.connect_to(BOB)
    qtbot.waitUntil(lambda: ("add_contacts", [BOB]) in client.calls, timeout=WAIT_MS)


def test_contact_errors_are_shown(
    window: Any, client: FakeClient, qtbot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _w, _t, text: shown.append(text))
    online(client, qtbot, window)
    client.contact_errors = {"nonsense": "not a peer id"}
    window.peers.addContacts.emit(["nonsense"])
    qtbot.waitUntil(lambda: shown == ["nonsense: not a peer id"], timeout=WAIT_MS)


def test_join_and_leave_reach_the_peer_in_the_order_clicked(
    window: Any, client: FakeClient, qtbot: Any
) -> None:
    online(client, qtbot, window)
    window.join_topic("room")
    window.leave_topic("room")
    window.join_topic("room")
    topic_calls = lambda: [c for c in client.calls if c[0] in ("subscribe", "unsubscribe")]  # noqa: E731
    qtbot.waitUntil(lambda: len(topic_calls()) == 3, timeout=WAIT_MS)
    assert topic_calls() == [("subscribe", "room"), ("unsubscribe", "room"), ("subscribe", "room")]


# -- the files pane ---------------------------------------------------------------------------


def test_own_listing_shown_and_remote_listing_read_only(
    window: Any, client: FakeClient, qtbot: Any
) -> None:
    client.files = FileListing(
        "bafyroot",
        (
            FileEntry("docs", "directory", "bafydir"),
            FileEntry("docs/a.txt", "file", "bafya", "text/plain", 3),
        ),
    )
    online(client, qtbot, window)
    model = window.files_pane.model
    qtbot.waitUntil(lambda: model.index_of("docs/a.txt").isValid(), timeout=WAIT_MS)
    assert not model.read_only
    window.files_pane.set_peers([(ALICE, "alice")])
    window.files_pane.source.setCurrentIndex(window.files_pane.source.findData(ALICE))
    qtbot.waitUntil(lambda: ("list_peer_files", ALICE) in client.calls, timeout=WAIT_MS)
    client.event_received.emit(
        ev.PeerFiles(ALICE, "bafytheirs", {"theirs.txt": {"type": "file", "cid": "bafyt"}})
    )
    qtbot.waitUntil(lambda: model.index_of("theirs.txt").isValid(), timeout=WAIT_MS)
    assert model.read_only and not window.files_pane.delete.isEnabled()


def test_drop_of_a_folder_makes_its_folders_then_stores_its_files(
    window: Any, client: FakeClient, qtbot: Any, tmp_path: Path
) -> None:
    online(client, qtbot, window)
    folder = tmp_path / "album"
    (folder / "inner").mkdir(parents=True)
    (folder / "a.txt").write_bytes(b"A")
    (folder / "inner" / "b.txt").write_bytes(b"B")
    window.files.store_paths("", [folder])
    qtbot.waitUntil(
        lambda: window.files_pane.model.index_of("album/inner/b.txt").isValid(), timeout=WAIT_MS
    )
    changes = [c[:3] for c in client.calls if c[0] in ("mkdir", "store_file")]
    assert changes == [
        ("mkdir", "album"),
        ("mkdir", "album/inner"),
        ("store_file", "album/a.txt", folder / "a.txt"),
        ("store_file", "album/inner/b.txt", folder / "inner" / "b.txt"),
    ]
    assert window.files_pane.progress == {}


def test_cancelled_import_says_so_and_stops_the_drop(
    window: Any, client: FakeClient, qtbot: Any, tmp_path: Path
) -> None:
    online(client, qtbot, window)
    client.store_gate = asyncio.Event()
    first, second = tmp_path / "one.bin", tmp_path / "two.bin"
    first.write_bytes(b"1")
    second.write_bytes(b"2")
    window.files.store_paths("", [first, second])
    qtbot.waitUntil(lambda: len(window.files_pane.progress) == 1, timeout=WAIT_MS)
    (row,) = window.files_pane.progress.values()
    row.cancelled.emit()
    qtbot.waitUntil(
        lambda: window.statusBar().currentMessage() == "Cancelled: adding one.bin", timeout=WAIT_MS
    )
    assert [c[1] for c in client.calls if c[0] == "store_file"] == ["one.bin"]
    assert window.files_pane.progress == {}


def test_get_by_cid_has_a_cancel_that_stops_the_fetch(
    window: Any, client: FakeClient, qtbot: Any
) -> None:
    online(client, qtbot, window)
    window.files.get_by_cid("bafymissing", "")
    qtbot.waitUntil(lambda: "get_file" in client.names(), timeout=WAIT_MS)
    assert [c[:3] for c in client.calls if c[0] == "get_file"] == [("get_file", "bafymissing", "")]
    (row,) = window.files_pane.progress.values()
    row.cancelled.emit()
    qtbot.waitUntil(lambda: window.files_pane.progress == {}, timeout=WAIT_MS)
    assert window.statusBar().currentMessage() == "Cancelled: get bafymissing"


def test_a_link_before_the_peer_runs_is_fetched_once_it_does(
    window: Any, client: FakeClient, qtbot: Any
) -> None:
    window.files.open_cid("bafylink")
    assert "get_file" not in client.names()
    online(client, qtbot, window)
    qtbot.waitUntil(lambda: "get_file" in client.names(), timeout=WAIT_MS)
    assert [c[:3] for c in client.calls if c[0] == "get_file"] == [("get_file", "bafylink", "")]
    client.get_gate.set()  # no task left pending for the garbage collector to end later
    qtbot.waitUntil(lambda: window.files_pane.progress == {}, timeout=WAIT_MS)


# -- the settings dialog ----------------------------------------------------------------------


def test_settings_dialog_imports_an_identity_through_the_profile(
    qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtWidgets import QInputDialog

    from gui.dialogs.settings import SettingsDialog

    profile = FakeProfile(tmp_path)
    dialog = SettingsDialog(tmp_path, None, profile)
    qtbot.addWidget(dialog)
    assert dialog.peer_label.text() == "peer-of-CAESQkey-one"
    errors: list[str] = []
    monkeypatch.setattr(QMessageBox, "critical", lambda _w, _t, text: errors.append(text))
    answers = iter([("bad", True), ("CAESQkey-two", True)])
    monkeypatch.setattr(QInputDialog, "getMultiLineText", lambda *_a: next(answers))
    dialog._import()
    assert errors == ["That key cannot be used: the key is not base64"]
    assert not dialog.needs_restart and profile.key == "CAESQkey-one"
    dialog._import()
    assert dialog.peer_label.text() == "peer-of-CAESQkey-two" and dialog.needs_restart
    dialog.port.setValue(4712)
    dialog.accept()
    assert profile.settings.listen_port == 4712


def test_settings_dialog_keeps_what_it_does_not_show(qtbot: Any, tmp_path: Path) -> None:
    from core.profile.settings import Settings
    from gui.dialogs.settings import SettingsDialog

    profile = FakeProfile(tmp_path)
    relay = f"/ip4/198.18.0.1/tcp/4001/p2p/{ALICE}"
    profile.settings = Settings(
        relays=[relay], conn_low_water=7, listen_addrs=["/ip4/0.0.0.0/tcp/0"]
    )
    dialog = SettingsDialog(tmp_path, None, profile)
    qtbot.addWidget(dialog)
    dialog.mdns.setChecked(not profile.settings.mdns)
    dialog.accept()
    saved = profile.settings
    assert saved.relays == [relay] and saved.conn_low_water == 7
    assert saved.listen_addrs == ["/ip4/0.0.0.0/tcp/0"] and dialog.needs_restart


def test_settings_dialog_switches_quic_and_says_a_restart_is_needed(
    qtbot: Any, tmp_path: Path
) -> None:
    from core.profile.settings import Settings
    from gui.dialogs.settings import SettingsDialog

    profile = FakeProfile(tmp_path)
    dialog = SettingsDialog(tmp_path, None, profile)
    qtbot.addWidget(dialog)
    assert dialog.quic.isChecked()  # on by default, beside TCP
    dialog.quic.setChecked(False)
    dialog.accept()
    assert profile.settings.quic is False and dialog.needs_restart
    assert profile.settings.effective_listen_addrs() == [
        f"/ip4/0.0.0.0/tcp/{profile.settings.listen_port}"
    ]
    again = SettingsDialog(tmp_path, None, profile)
    qtbot.addWidget(again)
    assert not again.quic.isChecked()
    again.accept()  # saved unchanged: no restart asked for
    assert profile.settings == replace(Settings(), quic=False) and not again.needs_restart
    again = SettingsDialog(tmp_path, None, profile)
    qtbot.addWidget(again)
    again.quic.setChecked(True)
    again.accept()
    assert profile.settings.quic is True and again.needs_restart


# -- reachability (issue 12) ------------------------------------------------------------------

RELAY = "12D3KooWRelayhijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTU"


def test_status_bar_says_how_others_reach_us(window: Any, client: FakeClient, qtbot: Any) -> None:
    from gui.models.names import derived_name

    online(client, qtbot, window)
    qtbot.waitUntil(lambda: window.reach_label.text() == "Checking reachability…", timeout=WAIT_MS)
    circuit = f"/ip4/198.18.0.1/tcp/4001/p2p/{RELAY}/p2p-circuit/p2p/{ME}"
    info = replace(client.network.info, reachability="private", relay_addrs=(circuit,))
    client.network = replace(client.network, info=info)
    client.event_received.emit(ev.ReachabilityChanged("private"))
    via = f"Behind NAT — reachable via relay {derived_name(RELAY)}"
    qtbot.waitUntil(lambda: window.reach_label.text() == via, timeout=WAIT_MS)
    assert circuit in window.reach_label.toolTip()
    window._set_nickname(RELAY, "home relay")
    qtbot.waitUntil(
        lambda: window.reach_label.text() == "Behind NAT — reachable via relay home relay",
        timeout=WAIT_MS,
    )
    client.network = replace(client.network, info=replace(info, relay_addrs=()))
    client.event_received.emit(ev.ReachabilityChanged("private"))
    qtbot.waitUntil(
        lambda: window.reach_label.text() == "Behind NAT — no relay yet", timeout=WAIT_MS
    )
    client.network = replace(client.network, info=replace(info, reachability="public"))
    client.event_received.emit(ev.ReachabilityChanged("public"))
    qtbot.waitUntil(lambda: window.reach_label.text() == "Public", timeout=WAIT_MS)
    # No verdict for a minute: no longer "checking" for ever, and the tooltip says why.
    client.network = replace(client.network, info=replace(info, reachability="unknown"))
    window._online_at -= 61
    client.event_received.emit(ev.ReachabilityChanged("unknown"))
    qtbot.waitUntil(lambda: window.reach_label.text() == "Reachability unknown", timeout=WAIT_MS)
    assert "two connected peers that offer AutoNAT" in window.reach_label.toolTip()


def test_elided_label_shows_the_longest_form_that_fits(qtbot: Any) -> None:
    from gui.widgets.elide import MIN_WIDTH, ElidedLabel

    label = ElidedLabel(mode=Qt.TextElideMode.ElideRight, keep_shortest=True)
    qtbot.addWidget(label)
    full, short, shortest = (
        "Behind NAT — reachable via relay lucky-crane",
        "NAT · lucky-crane",
        "NAT",
    )
    label.setText(full, short, shortest)
    metrics = label.fontMetrics()
    assert label.text() == full and label.toolTip() == full
    for width, shown in (
        (metrics.horizontalAdvance(full), full),
        (metrics.horizontalAdvance(full) - 1, short),
        (metrics.horizontalAdvance(short), short),
        (metrics.horizontalAdvance(shortest) + 2, shortest),
    ):
        label.resize(width, label.height())
        assert label.displayed() == shown, width
    assert label.minimumSizeHint().width() >= metrics.horizontalAdvance(shortest)
    label.setText("x" * 300)  # one form only: cut, and it asks for little room
    label.resize(100, label.height())
    assert label.displayed().endswith("…") and label.minimumSizeHint().width() <= 240
    assert ElidedLabel("x" * 300).minimumSizeHint().width() == MIN_WIDTH


@pytest.mark.parametrize("nickname", ["", "the relay in the attic at my parents' house"])
def test_status_bar_keeps_the_relay_name_whole_at_1280(
    window: Any, client: FakeClient, qtbot: Any, nickname: str
) -> None:
    from gui.models.names import derived_name

    online(client, qtbot, window)
    if nickname:
        window._set_nickname(RELAY, nickname)
    relay = nickname or derived_name(RELAY)
    circuits = tuple(
        f"/ip4/198.18.0.{i}/tcp/4001/p2p/{peer}/p2p-circuit/p2p/{ME}"
        for i, peer in ((1, RELAY), (2, ALICE))
    )
    info = replace(
        client.network.info,
        reachability="private",
        relay_addrs=circuits,
        dht_ready=True,
        mdns=True,
        connections=tuple(connection(p) for p in (RELAY, ALICE)),
    )
    client.network = replace(client.network, info=info)
    client.event_received.emit(ev.ReachabilityChanged("private"))
    full = f"Behind NAT — reachable via relay {relay} (+1)"
    qtbot.waitUntil(lambda: window.reach_label.text() == full, timeout=WAIT_MS)
    assert window.reach_label.toolTip().startswith(full + "\n") and circuits[0] in (
        window.reach_label.toolTip()
    )
    window.statusBar().showMessage("Peer 12D3…SA started", 5000)
    for width in (1268, 1000):  # a 1280 screen's window, and the narrowest it gets
        window.resize(width, 700)
        qtbot.waitUntil(lambda w=width: window.width() <= w + 1, timeout=WAIT_MS)
        qtbot.wait(50)
        shown = window.reach_label.displayed()
        # the name whole, or the short form that leaves it to the tooltip; never cut
        assert shown in (full, f"NAT · via relay {relay} (+1)", "NAT · via relay"), shown
        assert "…" not in shown
        if width == 1268 and not nickname:
            assert relay in shown


def test_relay_of_reads_the_relay_from_a_circuit_address() -> None:
    from gui.models.reachability import relay_of

    assert relay_of(f"/ip4/1.2.3.4/tcp/1/p2p/{RELAY}/p2p-circuit/p2p/{ME}") == RELAY
    assert relay_of(f"/ip4/1.2.3.4/tcp/1/p2p/{RELAY}/p2p-circuit") == RELAY
    assert relay_of(f"/ip4/1.2.3.4/tcp/1/p2p/{RELAY}") == ""
    assert relay_of("/p2p-circuit") == "" and relay_of("") == ""


def test_peers_pane_shows_each_peers_connection_kind(
    window: Any, client: FakeClient, qtbot: Any
) -> None:
    from core.snapshots import Link

    relayed = f"/ip4/198.18.0.1/tcp/4001/p2p/{RELAY}/p2p-circuit"
    punched = replace(
        connection(ALICE),
        kind="hole-punched",
        links=(
            Link(("/ip4/198.18.0.9/tcp/5000",), "outbound", "hole-punched"),
            Link((relayed,), "inbound", "relayed"),
        ),
    )
    only_relayed = replace(
        connection(BOB), kind="relayed", links=(Link((relayed,), "inbound", "relayed"),)
    )
    client.network = replace(
        client.network,
        info=replace(client.network.info, connections=(punched, only_relayed)),
    )
    online(client, qtbot, window)
    model = window.peers_model
    link = model.COLUMNS.index("Link")
    shown = {
        model.data(model.index(i, 0), 256): model.data(model.index(i, link))
        for i in range(model.rowCount())
    }
    assert shown == {ALICE: "hole-punched · 12.5 ms", BOB: "relayed · 12.5 ms"}
    row = next(i for i in range(model.rowCount()) if model.rows[i].peer == ALICE)
    tip = model.data(model.index(row, link), 3)
    assert "DCUtR" in tip and "relayed inbound " + relayed in tip


def test_settings_dialog_edits_relays_relay_service_and_name(qtbot: Any, tmp_path: Path) -> None:
    from gui.dialogs.settings import SettingsDialog

    profile = FakeProfile(tmp_path)
    dialog = SettingsDialog(tmp_path, None, profile)
    qtbot.addWidget(dialog)
    relay = f"/ip4/198.18.0.1/tcp/4001/p2p/{RELAY}"
    dialog.relays.setPlainText(f"  {relay}\n\n")
    dialog.relay_service.setChecked(True)
    assert dialog.port_mapping.isChecked()  # on by default in the desktop
    dialog.port_mapping.setChecked(False)
    dialog.display_name.setText("  Ada  ")
    dialog.accept()
    saved = profile.settings
    assert saved.relays == [relay] and saved.relay_service and saved.display_name == "Ada"
    assert not saved.port_mapping
    assert dialog.needs_restart
    again = SettingsDialog(tmp_path, None, profile)
    qtbot.addWidget(again)
    assert again.relays.toPlainText() == relay and again.relay_service.isChecked()
    assert again.display_name.text() == "Ada"


# -- transfers (issue 13) ---------------------------------------------------------------------


def _states(window: Any) -> dict[str, str]:
    return {job.name: job.state for job in window.transfers_model.rows}


def test_transfers_list_a_drop_queued_with_progress_and_skip_a_cancelled_one(
    window: Any, client: FakeClient, qtbot: Any, tmp_path: Path
) -> None:
    online(client, qtbot, window)
    client.store_gate = asyncio.Event()
    first, second = tmp_path / "one.bin", tmp_path / "two.bin"
    first.write_bytes(b"1" * 2000)
    second.write_bytes(b"2" * 10)
    window.files.store_paths("", [first, second])
    qtbot.waitUntil(lambda: _states(window) == {"one.bin": "running", "two.bin": "queued"})
    assert window.docks["Transfers"].windowTitle() == "Transfers (2)"
    op = window.transfers_model.newest("Import", "one.bin").op
    client.event_received.emit(ev.Progress(op, 1000, 2000))
    model = window.transfers_model
    row = model.rows.index(model.find(op))
    assert model.data(model.index(row, 2)).startswith("50% of ")
    window.docks["Transfers"].raise_()
    assert not window.transfers.table.viewport().grab().isNull()  # the bar delegate paints
    window.transfers.table.selectRow(model.rows.index(model.newest("Import", "two.bin")))
    window.transfers.cancel_selected()  # the queued one: skipped, the running one goes on
    assert client.cancelled == []
    client.store_gate.set()
    qtbot.waitUntil(lambda: _states(window) == {"one.bin": "done", "two.bin": "cancelled"})
    assert [c[1] for c in client.calls if c[0] == "store_file"] == ["one.bin"]
    assert window.docks["Transfers"].windowTitle() == "Transfers"
    window.transfers_model.clear_finished()
    assert window.transfers_model.rows == []


def test_cancelling_the_running_import_in_transfers_stops_the_drop(
    window: Any, client: FakeClient, qtbot: Any, tmp_path: Path
) -> None:
    online(client, qtbot, window)
    client.store_gate = asyncio.Event()
    paths = [tmp_path / f"{n}.bin" for n in ("a", "b", "c")]
    for path in paths:
        path.write_bytes(b"x")
    window.files.store_paths("", paths)
    qtbot.waitUntil(lambda: _states(window).get("a.bin") == "running")
    model = window.transfers_model
    model.cancel(model.rows.index(model.newest("Import", "a.bin")))
    expected = {"a.bin": "cancelled", "b.bin": "cancelled", "c.bin": "cancelled"}
    qtbot.waitUntil(lambda: _states(window) == expected, timeout=WAIT_MS)
    assert client.cancelled and window.files_pane.progress == {}


def test_a_download_is_listed_with_its_size_and_can_be_cancelled(
    window: Any, client: FakeClient, qtbot: Any, tmp_path: Path
) -> None:
    online(client, qtbot, window)
    entries = {"film.mkv": {"type": "file", "cid": "bafyfilm", "mimeType": "video", "size": 5000}}
    window.files_pane.show_listing("bafyroot", entries, read_only=True)
    window.files.save("bafyfilm", str(tmp_path / "film.mkv"), ALICE)
    qtbot.waitUntil(lambda: len(window.transfers_model.rows) == 1)
    (job,) = window.transfers_model.rows
    assert (job.kind, job.total, job.state) == ("Download", 5000, "running")
    window.transfers_model.cancel(0)
    qtbot.waitUntil(lambda: job.state == "cancelled", timeout=WAIT_MS)
    assert window.files_pane.progress == {}


def test_a_get_that_found_nothing_is_listed_as_failed(
    window: Any, client: FakeClient, qtbot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    online(client, qtbot, window)
    window.files.get_by_cid("bafynone", "")
    qtbot.waitUntil(lambda: _states(window) == {"bafynone": "running"})
    said: list[str] = []
    monkeypatch.setattr(window.files, "_message", lambda _icon, _title, text: said.append(text))
    error = "bafynone is not stored here and no peer provided it"
    client.event_received.emit(ev.GotFile("bafynone", False, {"error": error}))
    client.get_gate.set()
    qtbot.waitUntil(lambda: _states(window) == {"bafynone": "failed"}, timeout=WAIT_MS)
    assert window.transfers_model.rows[0].detail == "it is not stored here and no peer provided it"
    # The CID once, the reason as a sentence, and what the user can do about it.
    assert said[0].count("bafynone") == 1 and "It is not stored here" in said[0]
    assert "fallback peer" in said[0]


def _reds(window: Any, row: int) -> int:
    """Red pixels painted in the row's progress cell (the failed colour, not the bar's)."""
    table = window.transfers.table
    rect = table.visualRect(window.transfers_model.index(row, 2))
    image = table.viewport().grab(rect).toImage()
    return sum(
        1
        for x in range(image.width())
        for y in range(image.height())
        if (c := image.pixelColor(x, y)).red() > 150 and c.green() < 90 and c.blue() < 90
    )


def test_a_failed_transfer_shows_failed_where_its_bar_was(
    window: Any, client: FakeClient, qtbot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed job's progress cell was an empty bar: it now reads "Failed: why", in red."""
    online(client, qtbot, window)
    monkeypatch.setattr(window.files, "_message", lambda *_args: None)
    window.files.get_by_cid("bafynone", "")
    window.files.get_by_cid("bafyslow", "")
    qtbot.waitUntil(lambda: set(_states(window).values()) == {"running"}, timeout=WAIT_MS)
    window.docks["Transfers"].raise_()
    window.transfers.table.clearSelection()
    error = "bafynone is not stored here and no peer provided it"
    client.event_received.emit(ev.GotFile("bafynone", False, {"error": error}))
    qtbot.waitUntil(lambda: _states(window)["bafynone"] == "failed", timeout=WAIT_MS)
    model = window.transfers_model
    failed = model.rows.index(model.newest("Get", "bafynone"))
    running = model.rows.index(model.newest("Get", "bafyslow"))
    progress = model.index(failed, model.COLUMNS.index("Progress"))
    assert model.data(progress) == "Failed: it is not stored here and no peer provided it"
    assert _reds(window, failed) > 20  # the reason painted in red
    assert _reds(window, running) == 0  # a running job keeps its plain bar
    client.get_gate.set()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_get_by_cid_shows_bytes_the_size_once_known_and_one_speed(
    window: Any, client: FakeClient, qtbot: Any
) -> None:
    """The Files pane's row and the Transfers row read the same job: the same speed and time
    left (measured once, in the model), the size as soon as the core knows it."""
    online(client, qtbot, window)
    model = window.transfers_model
    clock = model.clock = Clock()
    window.files.get_by_cid("bafybig", "")
    qtbot.waitUntil(lambda: "get_file" in client.names(), timeout=WAIT_MS)
    op = client.calls[-1][3]
    assert model.find(op) is not None and model.find(op).kind == "Get"
    (row,) = window.files_pane.progress.values()
    assert row.bar.maximum() == 0  # no size yet: a busy bar
    mib = 1048576
    for done in (0, 2 * mib, 4 * mib):  # the root block told the size: 10 MiB
        clock.now += 1
        client.event_received.emit(ev.Progress(op, done, 10 * mib))
    speed = model.data(model.index(0, model.COLUMNS.index("Speed")))
    left = model.data(model.index(0, model.COLUMNS.index("Time left")))
    assert speed == "1.3 MiB/s" and left == "4 s"  # over the last 3 s, not since the start
    assert row.bar.format() == "40% · 4.0 of 10.0 MiB"
    assert row.pace.text() == f"{speed} · {left} left"
    assert row.bar.value() == 400
    clock.now += 10  # a stall: no report, both say so after the next tick
    model.tick()
    assert model.data(model.index(0, model.COLUMNS.index("Speed"))) == "0 B/s"
    assert (row.bar.format(), row.pace.text()) == ("40% · 4.0 of 10.0 MiB", "0 B/s")
    client.get_gate.set()
    qtbot.waitUntil(lambda: window.files_pane.progress == {}, timeout=WAIT_MS)


def test_finished_transfers_are_listed_again_after_a_restart(
    qtbot: Any, client: FakeClient, tmp_path: Path
) -> None:
    """The window writes them to the profile's transfers.json (at most once a second and
    on close); the next window lists them; a broken file is an empty list, not a crash."""
    from gui.mainwindow import MainWindow
    from gui.panes.log import LogView, QtLogHandler

    def open_window() -> Any:
        win = MainWindow(client, tmp_path, LogView(QtLogHandler()))
        qtbot.addWidget(win)
        return win

    first = open_window()
    model = first.transfers_model
    model.add("x", "Import", "kept.bin", lambda: None, total=5)
    model.start("x")
    model.finish("x", "done")
    model.add("y", "Get", "bafyfailed", lambda: None)
    model.finish("y", "failed", "no peer has it")
    model.add("z", "Download", "running.bin", lambda: None)
    model.start("z")
    qtbot.waitUntil(lambda: (tmp_path / "transfers.json").exists(), timeout=WAIT_MS)  # 1 s
    first.info_timer.stop()
    first.close()

    second = open_window()
    assert _states(second) == {
        "kept.bin": "done",
        "bafyfailed": "failed",
        "running.bin": "cancelled",  # it was running when the window closed
    }
    assert second.transfers_model.active_count == 0
    assert second.docks["Transfers"].windowTitle() == "Transfers"
    second.info_timer.stop()
    second.close()

    (tmp_path / "transfers.json").write_text('{"transfers": [{"kind": ')
    third = open_window()
    assert third.transfers_model.rows == []
    assert (tmp_path / "transfers.json.broken").exists()
    third.info_timer.stop()
    third.close()


def test_a_narrow_files_tree_hides_cids_then_types_so_names_stay_readable(
    qtbot: Any,
) -> None:
    from gui.panes.files import WIDE_ENOUGH_FOR_CIDS, WIDE_ENOUGH_FOR_TYPES, FilesPane

    pane = FilesPane()
    qtbot.addWidget(pane)
    entries: dict[str, dict[str, Any]] = {
        "board-game-rules.txt": {"type": "file", "cid": "bafyrules", "size": 1000},
        "video.bin": {"type": "file", "cid": "bafyv", "mimeType": "application/octet-stream"},
    }
    pane.show_listing("bafyroot", entries, read_only=False)
    video = pane.model.index_of("video.bin")
    assert pane.model.data(video.siblingAtColumn(2)) == "binary"  # not "appl…ream"
    pane.show()
    view = pane.view
    for width, cids, types in ((900, True, True), (WIDE_ENOUGH_FOR_CIDS - 40, False, True)):
        pane.resize(width, 400)
        qtbot.waitUntil(lambda w=width: abs(pane.width() - w) < 2)
        assert (not view.isColumnHidden(3), not view.isColumnHidden(2)) == (cids, types)
    pane.resize(WIDE_ENOUGH_FOR_TYPES - 40, 400)
    qtbot.waitUntil(lambda: view.isColumnHidden(2))
    name = pane.model.index(0, 0)
    assert view.columnWidth(0) > view.fontMetrics().horizontalAdvance("board-game-rules.txt")
    assert pane.model.data(name, Qt.ItemDataRole.ToolTipRole).split("\n") == [
        "board-game-rules.txt",
        "file · 1000 B",
        "bafyrules",
    ]


def test_the_monitor_timeline_names_peers_as_the_window_does(
    window: Any, client: FakeClient, qtbot: Any
) -> None:
    window.monitor.add_topic("lobby")
    window.monitor.on_message("lobby", ALICE, "hi")
    model = window.monitor.timeline
    peer = model.index(0, model.COLUMNS.index("Peer"))
    assert model.data(peer) == short_id(ALICE)  # no name known yet
    window.monitor.alias = {ALICE: "Alice"}
    assert model.data(peer) == "Alice"
    assert model.data(peer, Qt.ItemDataRole.ToolTipRole) == ALICE
    topic_column = model.COLUMNS.index("Topic")
    assert window.monitor.table.isColumnHidden(topic_column)  # one topic: the picker says it
    window.monitor.add_topic("other")
    assert not window.monitor.table.isColumnHidden(topic_column)


def test_a_window_makes_no_temporary_folder_until_a_file_is_opened(
    window: Any, client: FakeClient, qtbot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtGui import QDesktopServices

    assert window.files._open_dir is None
    online(client, qtbot, window)
    opened: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()))
    client.get_gate.set()
    window.files.open("bafyfile", "notes.txt", "")
    qtbot.waitUntil(lambda: bool(opened), timeout=WAIT_MS)
    folder = window.files._open_dir
    assert folder is not None and opened == [str(folder / "bafyfile" / "notes.txt")]
    folder.joinpath("bafyfile").rmdir()
    folder.rmdir()


def test_transfer_buttons_are_enabled_only_when_they_would_do_something(
    window: Any, qtbot: Any
) -> None:
    pane, model = window.transfers, window.transfers_model
    assert not pane.cancel_button.isEnabled() and not pane.clear_button.isEnabled()
    model.add("a", "Import", "a.bin", lambda: None)
    model.add("b", "Get", "bafyb", lambda: None)
    model.finish("b", "failed", "not found")
    assert pane.clear_button.isEnabled()
    pane.table.selectRow(0)  # the failed one: nothing to cancel
    assert not pane.cancel_button.isEnabled()
    pane.table.selectRow(1)
    assert pane.cancel_button.isEnabled()
    model.finish("a", "cancelled")
    assert not pane.cancel_button.isEnabled()
    model.clear_finished()
    assert not pane.clear_button.isEnabled()


# -- names peers chose ------------------------------------------------------------------------


def test_the_name_a_peer_chose_is_shown_kept_and_loses_to_a_nickname(
    qtbot: Any, client: FakeClient, tmp_path: Path
) -> None:
    from gui.mainwindow import MainWindow
    from gui.models.names import derived_name
    from gui.panes.log import LogView, QtLogHandler

    win = MainWindow(client, tmp_path, LogView(QtLogHandler()))
    qtbot.addWidget(win)
    view = win.open_direct(ALICE)
    assert win.conversations.tabText(win.conversations.indexOf(view)) == f"@ {derived_name(ALICE)}"
    chose = replace(connection(ALICE), name="Ada")
    client.network = replace(
        client.network, info=replace(client.network.info, connections=(chose,))
    )
    online(client, qtbot, win)
    model = win.peers_model
    assert model.alias(ALICE) == "Ada"
    assert win.conversations.tabText(win.conversations.indexOf(view)) == "@ Ada"
    win._set_nickname(ALICE, "my sister")
    assert model.alias(ALICE) == "my sister"
    tip = model.data(model.index(0, 0), 3)
    assert "calls itself “Ada”" in tip
    win._set_nickname(ALICE, "")
    win.info_timer.stop()
    win.close()

    # A new window (a restart) knows the name while the peer is offline.
    again = MainWindow(FakeClient(), tmp_path, LogView(QtLogHandler()))
    qtbot.addWidget(again)
    assert again.peers_model.alias(ALICE) == "Ada"
    assert again.peers_model.alias(BOB) == derived_name(BOB)
    again.close()


def test_own_display_name_shown_as_ours(window: Any, client: FakeClient, qtbot: Any) -> None:
    window.peers.own_name = "Ada"
    online(client, qtbot, window)
    assert window.peers.me.text().startswith("This peer: Ada · ")
