"""Hostile WebSocket clients of ``peerdesk serve`` (issue 10, items 3, 6 and 7; issue 9's big
``storefile``): a client that stops reading, unfinished or oversized messages, floods of
``peer {}``. Each test asserts the server and the victim's peer alive, an honest client
answered within a second, RSS growth bounded (the bound is in the test), the victim's data
intact."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from core import wsapi

from .test_hostile_local import honest_check, rss_bytes, served, victim_with_file
from .test_wsapi import client

MiB = 1024 * 1024
SECRET = b"the victim's file, which must read back intact"


def _request(rid: int, method: str, params: dict) -> str:
    return json.dumps({"requestid": rid, "method": method, "params": params, "isresponse": False})


async def test_a_client_that_stops_reading_is_closed_not_buffered_without_end(
    tmp_path: Path,
) -> None:
    """80 answers of 5.6 MiB each (450 MiB) asked for by a client that never reads: it is
    closed once its outbox passes wsapi.OUTBOX_BYTES, and its peer goes. RSS bound: 256 MiB
    (64 MiB of outbox plus the answers being built and the allocator keeping freed pages)."""
    async with served(tmp_path) as (port, manager, _):
        url = f"ws://127.0.0.1:{port}/ws"
        async with client(url) as victim:
            await victim_with_file(victim, "keep.txt", SECRET)
            mine = (await victim.call("info"))["result"]["peerid"]
            before = rss_bytes()
            big = os.urandom(4 * MiB)
            async with open_websocket_url(url, max_message_size=128 * MiB) as stalled:
                await stalled.send_message(_request(0, "peer", {}))
                content = base64.b64encode(big).decode()
                await stalled.send_message(
                    _request(1, "storefile", {"path": "big.bin", "content": content})
                )
                with trio.fail_after(30):
                    while len(manager.peers) < 2:
                        await trio.sleep(0.05)
                    stalled_peer = next(p for i, p in manager.peers.items() if i != mine)
                    # Wait for the store, then ask for the file again and again, never reading.
                    while True:
                        tree = stalled_peer.files.tree
                        if tree.root and await _has(tree, "big.bin"):
                            break
                        await trio.sleep(0.05)
                cid = await _cid_of(stalled_peer.files.tree, "big.bin")
                for rid in range(2, 82):
                    try:
                        await stalled.send_message(_request(rid, "getfile", {"cid": cid}))
                    except ConnectionClosed:
                        break
                with trio.fail_after(30):
                    while len(manager.peers) > 1:
                        await trio.sleep(0.05)
                await honest_check(victim, "keep.txt", SECRET)
            growth = rss_bytes() - before
            assert growth < 256 * MiB, f"RSS grew {growth / MiB:.0f} MiB"
            assert wsapi.OUTBOX_BYTES <= 64 * MiB


async def _has(tree, name: str) -> bool:
    try:
        return name in (await tree.listing())["entries"]
    except Exception:
        return False


async def _cid_of(tree, name: str) -> str:
    return (await tree.listing())["entries"][name]["cid"]


async def test_direct_messages_to_an_unreachable_peer_are_bounded_with_error_answers(
    tmp_path: Path,
) -> None:
    """200 sends of 1 MiB to a peer nobody can reach: past DirectConfig.max_pending_bytes
    (64 MiB) each is refused at once with an error answer. RSS bound: 128 MiB (the unbounded
    queue held all of them, ~270 MiB of frames)."""
    from core import identity

    nobody = str(identity.peer_id(identity.generate()))
    async with served(tmp_path) as (port, manager, _):
        url = f"ws://127.0.0.1:{port}/ws"
        async with client(url) as victim, client(url) as sender:
            await victim_with_file(victim, "keep.txt", SECRET)
            assert "result" in await sender.call("peer", {})
            before = rss_bytes()
            blob = "x" * MiB
            rids = []
            for _ in range(200):
                rid = sender.request_nowait(
                    "send", {"peer": nobody, "protocol": "chat", "data": blob}
                )
                await sender.ws.send_message(sender._pending_send)
                rids.append(rid)
            refused = 0
            with trio.fail_after(60):
                for rid in rids[-120:]:  # the last ones are past the bound: answered at once
                    reply = await sender.response(rid)
                    refused += "queue full" in reply.get("error", {}).get("message", "")
            assert refused >= 100
            growth = rss_bytes() - before
            await honest_check(victim, "keep.txt", SECRET)
            with trio.fail_after(1):
                assert "result" in await sender.call("info")
            assert len(manager.peers) == 2
            assert growth < 128 * MiB, f"RSS grew {growth / MiB:.0f} MiB"


async def test_a_flood_of_peer_requests_is_served_concurrently_and_capped(tmp_path: Path) -> None:
    """60 sockets send ``peer {}`` at once to a server capped at 24 peers: every one is
    answered (a peer, or a clear "too many peers" error), sockets that left before their turn
    get no peer, and the folders of keyless peers are gone once they close. RSS bound: 400 MiB
    for 24 whole libp2p peers."""
    from core import identity

    key = identity.export_key(identity.generate())
    async with served(tmp_path, max_peers=24) as (port, manager, _):
        url = f"ws://127.0.0.1:{port}/ws"
        async with client(url) as victim:
            assert "result" in await victim.call("peer", {"peerkey": key})
            stored = await victim.call(
                "storefile", {"path": "keep.txt", "content": base64.b64encode(SECRET).decode()}
            )
            assert "result" in stored
            before = rss_bytes()
            answers: list[dict] = []

            async def one() -> None:
                async with open_websocket_url(url) as ws:
                    await ws.send_message(_request(0, "peer", {}))
                    with trio.fail_after(120):
                        answers.append(json.loads(await ws.get_message()))
                    await all_answered.wait()

            async def gone_at_once() -> None:
                async with open_websocket_url(url) as ws:
                    await ws.send_message(_request(0, "peer", {}))

            all_answered = trio.Event()
            async with trio.open_nursery() as nursery:
                for i in range(60):
                    nursery.start_soon(one)
                    if i % 6 == 0:
                        nursery.start_soon(gone_at_once)
                with trio.fail_after(150):
                    while len(answers) < 60:
                        await trio.sleep(0.1)
                made = [a for a in answers if "result" in a]
                refused = [a for a in answers if "error" in a]
                assert len(made) + len(refused) == 60
                assert made and len(manager.peers) <= 24
                assert all("too many peers" in a["error"]["message"] for a in refused)
                with trio.fail_after(1):
                    assert "result" in await victim.call("info")
                growth = rss_bytes() - before
                all_answered.set()
            kept = {str(identity.peer_id(identity.import_key(key)))}
            with trio.fail_after(60):
                while len(manager.peers) > 1 or _folders(tmp_path / "peers") != kept:
                    await trio.sleep(0.1)
            await honest_check(victim, "keep.txt", SECRET)
            assert growth < 400 * MiB, f"RSS grew {growth / MiB:.0f} MiB"


def _folders(where: Path) -> set[str]:
    return {p.name for p in where.iterdir()}
