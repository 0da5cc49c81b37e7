"""Regressions for defects found in review: each of these once crashed a peer, took down the
WebSocket server, reset the wrong stream, leaked memory or left a sender waiting forever."""

from __future__ import annotations

import base64
import itertools
import struct
from pathlib import Path

import trio

from core.events import Delivery, GotFile, PeerData, PeerFiles, TopicData
from core.network.direct import DeliveryFailed
from core.network.framing import dumps
from core.profile import identity
from core.server.manager import PeerManager
from core.server.wsapi import WsApi
from tests.conftest import connect, fast_config, peer_group
from tests.core.server.test_wsapi import client

CHAT = "/chat/1.0.0"
NESTED = b"[" * 200_000


def stores(tmp_path: Path):
    dirs = itertools.count()

    def make():
        return fast_config(files_dir=str(tmp_path / f"p{next(dirs)}"))

    return make


async def _read(stream, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        buf += await stream.read(n - len(buf))
    return buf


async def test_deeply_nested_topic_message_is_dropped_not_fatal() -> None:
    async with peer_group(2) as [(a, _), (b, rb)]:
        await connect(a, b)
        await a.subscribe("t")
        await b.subscribe("t")
        await a.pubsub.publish("t", NESTED)
        await a.publish("t", "after")
        await rb.wait_for(lambda: TopicData("t", str(a.peer_id), "after") in rb.events)
        assert a.running and b.running


async def test_deeply_nested_websocket_request_gets_400_and_others_go_on() -> None:
    async with trio.open_nursery() as nursery:
        manager = await nursery.start(PeerManager(fast_config()).run)
        port = await nursery.start(WsApi(manager).serve, "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{port}/ws"
        async with client(url) as bystander, client(url) as evil:
            assert "result" in await bystander.call("peer", {})
            reply = await evil.raw(NESTED.decode(), -1)
            assert reply["error"]["code"] == 400
            assert "result" in await bystander.call("info", {})
        await manager.close()
        nursery.cancel_scope.cancel()


async def test_sharded_folder_from_a_fallback_peer(tmp_path: Path) -> None:
    async with peer_group(2, config=stores(tmp_path)) as [(a, _), (b, rb)]:
        for i in range(80):  # enough names for sub-shards
            await a.files.store_file(f"f{i}.txt", f"hello {i}".encode())
        root = a.files.tree.root
        await connect(b, a)
        b.files.get_file(root, str(a.peer_id))
        await rb.wait_for(lambda: rb.of(GotFile), timeout=30)
        got = rb.of(GotFile)[0]
        assert got.success and got.content["type"] == "directory"
        assert len(got.content["entries"]) == 80 and b.running


async def test_listing_while_the_tree_changes(tmp_path: Path) -> None:
    async with peer_group(1, config=stores(tmp_path)) as [(a, rec)]:
        for i in range(100):
            await a.files.store_file(f"d{i % 7}/f{i}.txt", f"hello {i}".encode())
        me = str(a.peer_id)
        async with trio.open_nursery() as nursery:

            async def churn() -> None:
                for i in range(60):
                    await a.files.store_file(f"d{i % 7}/g{i}.txt", b"x" * (i + 1))
                    await a.files.remove(f"d{i % 7}/g{i}.txt")
                nursery.cancel_scope.cancel()

            async def lister() -> None:
                while True:
                    a.files.list_files(me)
                    await trio.sleep(0.01)

            nursery.start_soon(churn)
            nursery.start_soon(lister)
        assert a.running
        assert rec.of(PeerFiles) and not [e for e in rec.of(PeerFiles) if e.error]


async def test_over_long_message_ids_are_refused() -> None:
    async with peer_group(2) as [(a, _), (b, rb)]:
        b.start_protocol(CHAT)
        await connect(a, b)
        stream = await a.host.new_stream(b.peer_id, [CHAT])
        data = base64.b64encode(b'"x"').decode()
        for msg_id in ("i" * 100_000, "ok-1"):
            frame = dumps({"type": "data", "id": msg_id, "data": data})
            await stream.write(struct.pack(">I", len(frame)) + frame)
        with trio.fail_after(5):
            (n,) = struct.unpack(">I", await _read(stream, 4))
            assert await _read(stream, n) == b'{"type":"ack","id":"ok-1"}'
        assert [e.data for e in rb.of(PeerData)] == ["x"]


async def test_a_failed_attempt_resets_its_own_stream_not_the_peers_newer_one() -> None:
    """A's message goes out on s1, which B never acks; meanwhile B opens s2 to A. A's retry
    goes out on s2 (the newest stream) and succeeds there: s2 must stay usable."""
    async with peer_group(2) as [(a, ra), (b, _)]:
        a.start_protocol(CHAT)
        s1_seen = trio.Event()

        async def black_hole(stream) -> None:
            s1_seen.set()
            while True:
                await stream.read(65536)

        b.host.set_stream_handler(CHAT, black_hole)
        await connect(a, b)
        msg = a.enqueue(str(b.peer_id), CHAT, "retry me")
        await s1_seen.wait()
        s2 = await b.host.new_stream(a.peer_id, [CHAT])
        hello = dumps({"type": "data", "id": "b-0", "data": base64.b64encode(b'"hello"').decode()})
        await s2.write(struct.pack(">I", len(hello)) + hello)
        with trio.fail_after(10):
            while True:  # acks for our data and A's re-sent message arrive on s2
                (n,) = struct.unpack(">I", await _read(s2, 4))
                frame = await _read(s2, n)
                if b'"type":"data"' in frame:
                    msg_id = frame.split(b'"id":"')[1].split(b'"')[0].decode()
                    ack = dumps({"type": "ack", "id": msg_id})
                    await s2.write(struct.pack(">I", len(ack)) + ack)
                    break
            await msg.wait()
        more = dumps({"type": "data", "id": "b-1", "data": base64.b64encode(b'"more"').decode()})
        await s2.write(struct.pack(">I", len(more)) + more)  # s2 still works after the retry
        await ra.wait_for(lambda: [e.data for e in ra.of(PeerData)] == ["hello", "more"])


async def test_stopping_a_peer_fails_its_queued_messages() -> None:
    unreachable = str(identity.peer_id(identity.generate()))
    async with trio.open_nursery() as nursery:
        from core.peer import new_peer
        from tests.conftest import Recorder

        rec = Recorder()
        a = await nursery.start(new_peer(fast_config(), rec).run)
        msgs = [a.enqueue(unreachable, CHAT, i) for i in range(3)]
        a.stop()
        await a.stopped.wait()
        for msg in msgs:
            assert msg.done.is_set() and msg.delivered is False
            try:
                await msg.wait()
            except DeliveryFailed:
                pass
        assert len([e for e in rec.of(Delivery) if not e.delivered]) == 3


async def test_websocket_listfiles_of_an_unreachable_peer_is_an_error(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        manager = await nursery.start(PeerManager(fast_config(files_dir=str(tmp_path))).run)
        port = await nursery.start(WsApi(manager).serve, "127.0.0.1", 0)
        async with client(f"ws://127.0.0.1:{port}/ws") as c:
            await c.call("peer", {})
            nobody = str(identity.peer_id(identity.generate()))
            reply = await c.call("listfiles", {"peerid": nobody})
            assert reply["error"]["code"] == 500
            assert not [p for p in c.pushes if p["method"] == "peerFiles"]
        await manager.close()
        nursery.cancel_scope.cancel()
