"""``/peerdesk/profile/1.0.0`` between real py-libp2p peers on loopback: names are learnt on
connect both ways, a peer that does not speak the protocol keeps its id, and hostile answers
or questions (too big, not JSON, not a string, never finished) cost a bounded wait and
change nothing."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import trio
from libp2p.abc import INetStream

from core.network import profile_name
from core.network.framing import dumps, encode_frame, read_frame
from core.network.profile_name import MAX_NAME, PROTOCOL, clean_name
from core.peer import Peer, PeerConfig
from core.profile.settings import Settings
from tests.conftest import connect, fast_config, peer_group


def named(*names: str):  # type: ignore[no-untyped-def]
    it = iter(names)
    return lambda: fast_config(display_name=next(it))


def name_seen(a: Peer, b: Peer) -> str:
    conns = [c for c in a.info()["connections"] if c["peer"] == str(b.peer_id)]
    return str(conns[0]["name"]) if conns else ""


async def wait_name(a: Peer, b: Peer, expected: str) -> None:
    with trio.fail_after(10):
        while name_seen(a, b) != expected:
            await trio.sleep(0.05)


def test_names_are_cleaned_of_what_could_fake_text() -> None:
    assert clean_name("  Ada\u202eevil  Lovelace\n") == "Adaevil Lovelace"
    assert clean_name("zero\u200bwidth\x00\x1b[31m") == "zerowidth[31m"
    assert clean_name("x" * 1000) == "x" * MAX_NAME
    assert clean_name("日本 🎉") == "日本 🎉"
    for hostile in (None, 42, ["Ada"], {"n": 1}, b"Ada"):
        assert clean_name(hostile) == ""


async def test_both_peers_learn_the_name_the_other_chose() -> None:
    async with peer_group(2, config=named("Ada", "")) as [(a, _), (b, _)]:
        await connect(a, b)
        await wait_name(b, a, "Ada")
        assert await a.profile_names.ask(b.peer_id) == ""  # b chose none: no name, no error
        assert name_seen(a, b) == ""
        b.config.display_name = "Grace"  # read at each answer
        assert await a.profile_names.ask(b.peer_id) == "Grace"


async def test_a_peer_without_the_protocol_keeps_its_id() -> None:
    async with peer_group(2, config=named("Ada", "Bob")) as [(a, _), (b, _)]:
        b.host.remove_stream_handler(PROTOCOL)  # as p2p-webapp, kubo or js-libp2p would be
        await connect(a, b)
        await wait_name(b, a, "Ada")
        with pytest.raises(Exception):  # noqa: B017  (the negotiation's own error, any kind)
            await a.profile_names.ask(b.peer_id)
        assert name_seen(a, b) == "" and a.running


async def _huge(stream: INetStream) -> None:
    await read_frame(stream, 1024)
    await stream.write(struct.pack(">I", 50_000_000) + b"{")


async def _garbage(stream: INetStream) -> None:
    await read_frame(stream, 1024)
    await stream.write(encode_frame(b"\xff not json"))


async def _not_a_string(stream: INetStream) -> None:
    await read_frame(stream, 1024)
    await stream.write(encode_frame(dumps({"name": ["Ada"] * 10})))


async def _silent(stream: INetStream) -> None:
    await trio.sleep_forever()


@pytest.mark.parametrize("answer", [_huge, _garbage, _not_a_string, _silent])
async def test_hostile_answers_cost_a_bounded_wait(
    answer: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(profile_name, "TIMEOUT", 1.0)
    async with peer_group(2, config=named("Ada", "Mallory")) as [(a, _), (b, _)]:
        b.host.set_stream_handler(PROTOCOL, answer)  # type: ignore[arg-type]
        await connect(a, b)
        with trio.fail_after(5):
            try:
                got = await a.profile_names.ask(b.peer_id)
            except Exception:
                got = ""
        assert got == ""
        await trio.sleep(0.3)
        assert name_seen(a, b) == "" and a.running and b.running


async def test_hostile_questions_are_refused_and_honest_ones_still_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(profile_name, "TIMEOUT", 1.0)
    async with peer_group(2, config=named("Ada", "")) as [(a, _), (b, _)]:
        await connect(b, a)
        for request in (struct.pack(">I", 50_000_000), encode_frame(b"[1,2"), b"\x00\x00"):
            stream = await b.host.new_stream(a.peer_id, [PROTOCOL])
            await stream.write(request)
            with trio.fail_after(5):  # reset by a, or closed once a gives up on it
                with pytest.raises(Exception):  # noqa: B017
                    await read_frame(stream, 1024)
        assert await b.profile_names.ask(a.peer_id) == "Ada" and a.running


async def test_a_peer_reconnecting_in_a_loop_is_asked_once_per_interval() -> None:
    async with peer_group(2, config=named("Ada", "Bob")) as [(a, _), (b, _)]:
        asked: list[str] = []
        original = b.profile_names._handle

        async def counting(stream: INetStream) -> None:
            asked.append(str(stream.muxed_conn.peer_id))
            await original(stream)

        b.host.set_stream_handler(PROTOCOL, counting)
        for _ in range(3):
            await connect(a, b)
            await wait_name(a, b, "Bob")
            await a.host.disconnect(b.peer_id)
            with trio.fail_after(5):
                while b.peer_id in a.host.get_connected_peers():
                    await trio.sleep(0.05)
        assert asked == [str(a.peer_id)]
        assert a.profile_names.name_of(str(b.peer_id)) == "Bob"  # kept while it is away


def test_the_setting_reaches_the_peer(tmp_path: Path) -> None:
    config = PeerConfig.from_settings(
        Settings(display_name="Ada"), tmp_path, listen_addrs=["/ip4/127.0.0.1/tcp/0"]
    )
    assert config.display_name == "Ada"


async def test_questions_past_a_peers_limits_are_reset_at_once_and_others_still_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A peer that opens many questions and never finishes them holds at most PER_PEER of
    ours; the rest are reset before a byte is read, well within TIMEOUT, and a third peer is
    answered meanwhile."""
    monkeypatch.setattr(profile_name, "TIMEOUT", 4.0)
    async with peer_group(3, config=named("Ada", "Mallory", "Bob")) as [(a, _), (m, _), (c, _)]:
        await connect(m, a)
        await connect(c, a)
        held = []
        for _ in range(profile_name.PER_PEER):
            held.append(await m.host.new_stream(a.peer_id, [PROTOCOL]))  # never asks
        await trio.sleep(0.3)
        assert a.profile_names._handling == {m.peer_id: profile_name.PER_PEER}
        with trio.fail_after(2):  # far less than TIMEOUT: refused, not timed out
            for _ in range(5):
                with pytest.raises(Exception):  # noqa: B017  (reset: the library's own error)
                    stream = await m.host.new_stream(a.peer_id, [PROTOCOL])
                    await stream.write(encode_frame(dumps({})))
                    await read_frame(stream, 1024)
        assert a.profile_names.refused == 5
        with trio.fail_after(2):
            assert await c.profile_names.ask(a.peer_id) == "Ada"
        for stream in held:
            await stream.reset()
        with trio.fail_after(5):
            while a.profile_names._handling:
                await trio.sleep(0.05)


async def test_a_peer_asking_in_a_loop_gets_its_burst_then_one_answer_per_refill(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(profile_name, "REFILL", 2.0)
    async with peer_group(3, config=named("Ada", "Mallory", "Bob")) as [(a, _), (m, _), (c, _)]:
        await connect(m, a)
        await connect(c, a)
        answered = refused = 0
        with trio.fail_after(10):
            for _ in range(profile_name.BURST + 10):
                try:
                    assert await m.profile_names.ask(a.peer_id) == "Ada"
                    answered += 1
                except Exception:
                    refused += 1
        # the question m asked on connect took one of its burst; a little refill in between
        assert answered >= profile_name.BURST - 1 and refused >= 5
        assert await c.profile_names.ask(a.peer_id) == "Ada"  # others keep their allowance
        await trio.sleep(2.5)
        assert await m.profile_names.ask(a.peer_id) == "Ada"  # and it comes back in time


async def test_questions_we_ask_are_capped_and_the_overflow_asked_on_reconnect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Six peers connect at once, each answering slowly: at most ASKERS questions are out at a
    time, at most MAX_QUEUED wait, the rest are not asked; a peer left out is asked when it
    connects again, and every asked name arrives."""
    monkeypatch.setattr(profile_name, "ASKERS", 2)
    monkeypatch.setattr(profile_name, "MAX_QUEUED", 2)
    names = ("Ada", "P1", "P2", "P3", "P4", "P5", "P6")
    async with peer_group(7, config=named(*names)) as group:
        (a, _), others = group[0], [p for p, _ in group[1:]]
        out = peak = 0

        def slow(peer: Peer):  # type: ignore[no-untyped-def]
            async def handler(stream: INetStream) -> None:
                nonlocal out, peak
                out += 1
                peak = max(peak, out)
                try:
                    await trio.sleep(0.5)
                    await peer.profile_names._handle(stream)
                finally:
                    out -= 1

            return handler

        for peer in others:
            peer.host.set_stream_handler(PROTOCOL, slow(peer))
        async with trio.open_nursery() as nursery:
            for peer in others:
                nursery.start_soon(connect, a, peer)
        assert a.profile_names.asking <= 4
        with trio.fail_after(10):
            while a.profile_names.asking:
                await trio.sleep(0.05)
        assert 1 <= peak <= 2
        known = [p for p in others if a.profile_names.name_of(str(p.peer_id))]
        left_out = [p for p in others if p not in known]
        assert len(known) == 4 and len(left_out) == 2
        for peer in left_out:  # not marked as asked: a new connection asks
            await a.host.disconnect(peer.peer_id)
            with trio.fail_after(5):
                while peer.peer_id in a.host.get_connected_peers():
                    await trio.sleep(0.05)
            await connect(a, peer)
            await wait_name(a, peer, names[1 + others.index(peer)])
