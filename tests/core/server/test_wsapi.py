"""p2p-webapp's WebSocket API, driven the way its TypeScript client drives it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from core.profile import identity
from core.server.manager import PeerManager
from core.server.wsapi import WsApi
from tests.conftest import fast_config


class Client:
    """A minimal copy of p2p-webapp's client: counts its own request ids, collects pushes."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.responses: dict[int, dict[str, Any]] = {}
        self.pushes: list[dict[str, Any]] = []
        self._changed = trio.Event()

    async def pump(self) -> None:
        async for text in _messages(self.ws):
            msg = json.loads(text)
            if msg["isresponse"]:
                self.responses[msg["requestid"]] = msg
            else:
                self.pushes.append(msg)
            self._changed.set()
            self._changed = trio.Event()

    async def raw(self, text: str, request_id: int) -> dict[str, Any]:
        await self.ws.send_message(text)
        return await self.response(request_id)

    def request_nowait(self, method: str, params: Any = None) -> int:
        rid = self.next_id
        self.next_id += 1
        self._pending_send = json.dumps(
            {"requestid": rid, "method": method, "params": params, "isresponse": False}
        )
        return rid

    async def call(self, method: str, params: Any = None) -> dict[str, Any]:
        rid = self.request_nowait(method, params)
        await self.ws.send_message(self._pending_send)
        return await self.response(rid)

    async def response(self, rid: int, timeout: float = 15) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while rid not in self.responses:
                await self._changed.wait()
        return self.responses[rid]

    async def push(self, method: str, timeout: float = 15, **match: Any) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while True:
                for p in self.pushes:
                    if p["method"] == method and all(
                        p["params"].get(k) == v for k, v in match.items()
                    ):
                        return p
                await self._changed.wait()


async def _messages(ws: WebSocketConnection) -> AsyncIterator[str]:
    from trio_websocket import ConnectionClosed

    while True:
        try:
            yield await ws.get_message()
        except ConnectionClosed:
            return


@asynccontextmanager
async def api_server() -> AsyncIterator[tuple[str, PeerManager]]:
    async with trio.open_nursery() as nursery:
        manager = await nursery.start(PeerManager(fast_config()).run)
        port = await nursery.start(WsApi(manager).serve, "127.0.0.1", 0)
        yield f"ws://127.0.0.1:{port}/ws", manager
        await manager.close()
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def client(url: str) -> AsyncIterator[Client]:
    async with open_websocket_url(url) as ws, trio.open_nursery() as nursery:
        c = Client(ws)
        nursery.start_soon(c.pump)
        yield c
        nursery.cancel_scope.cancel()


async def test_two_web_apps_chat_over_topic_and_direct_protocol() -> None:
    async with api_server() as (url, manager), client(url) as alice, client(url) as bob:
        ra = (await alice.call("peer", {}))["result"]
        key = identity.export_key(identity.generate())
        rb = (await bob.call("peer", {"peerkey": key}))["result"]
        assert rb["peerkey"] == key and rb["peerid"].startswith("12D3KooW")
        assert ra["version"] and ra["peerid"] != rb["peerid"]
        assert len(manager.peers) == 2

        # Peers of one process are connected and direct GossipSub peers of each other.
        assert (await alice.call("subscribe", {"topic": "room"}))["result"] is None
        assert (await bob.call("subscribe", {"topic": "room"}))["result"] is None
        await alice.push("peerChange", topic="room", peerid=rb["peerid"], joined=True)
        listed = await alice.call("listpeers", {"topic": "room"})
        assert listed["result"] == {"peers": [rb["peerid"]]}
        await bob.call("publish", {"topic": "room", "data": {"text": "hi all"}})
        got = await alice.push("topicData", topic="room", peerid=rb["peerid"])
        assert got["params"]["data"] == {"text": "hi all"}

        assert (await bob.call("start", {"protocol": "chat"}))["result"] is None
        again = await bob.call("start", {"protocol": "chat"})
        assert again["error"]["code"] == 500
        sent = await alice.call(
            "send", {"peer": rb["peerid"], "protocol": "chat", "data": {"text": "psst"}, "ack": 0}
        )
        assert sent["result"] is None and "error" not in sent
        await alice.push("ack", ack=0)  # pushed only once bob's peer really acked
        data = await bob.push("peerData", peer=ra["peerid"], protocol="chat")
        assert data["params"]["data"] == {"text": "psst"}

        # A delivery that cannot happen is reported, not swallowed.
        failed = await alice.call(
            "send", {"peer": rb["peerid"], "protocol": "nobody-listens", "data": 1, "ack": 1}
        )
        assert failed["error"]["code"] == 500
        await alice.push("sendFailed", ack=1)
        assert not [p for p in alice.pushes if p["method"] == "ack" and p["params"]["ack"] == 1]

        # Pushes carry the server's own increasing request ids.
        ids = [p["requestid"] for p in alice.pushes]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)

        # Closing the socket removes that connection's peer.
    with trio.fail_after(5):
        while manager.peers:
            await trio.sleep(0.05)


async def test_bad_requests_get_error_responses_and_the_server_goes_on() -> None:
    async with api_server() as (url, _), client(url) as c:
        r = await c.raw("{not json", -1)
        assert r["error"]["code"] == 400
        assert (await c.call("subscribe", {"topic": "t"}))["error"]["code"] == 404
        assert (await c.call("fly", {}))["error"] == {"code": 400, "message": "unknown method: fly"}
        assert (await c.call("peer", {"peerkey": "garbage"}))["error"]["code"] == 400
        assert (await c.call("peer", "params must be an object"))["error"]["code"] == 400
        me = (await c.call("peer", {}))["result"]
        assert (await c.call("peer", {}))["error"]["code"] == 500
        assert (await c.call("send", {"peer": "nope", "protocol": "p", "data": 1}))["error"][
            "code"
        ] == 400
        assert (await c.call("send", {"peer": me["peerid"], "protocol": "p"}))["error"][
            "code"
        ] == 400
        assert (await c.call("publish", {"topic": 5, "data": 1}))["error"]["code"] == 400
        assert (await c.call("addpeers", {"peerIds": "x"}))["error"]["code"] == 400
        assert (await c.call("addpeers", {"peerIds": ["not-a-peer"]}))["result"] is None
        assert (await c.call("connect", {"addr": "/ip4/127.0.0.1/tcp/1"}))["error"]["code"] == 400
        info = (await c.call("info"))["result"]
        assert info["peerid"] == me["peerid"] and info["addrs"]


async def test_duplicate_peer_key_is_refused() -> None:
    key = identity.export_key(identity.generate())
    async with api_server() as (url, _), client(url) as a, client(url) as b:
        assert "result" in await a.call("peer", {"peerkey": key})
        dup = await b.call("peer", {"peerkey": key})
        assert dup["error"]["code"] == 500 and "duplicate" in dup["error"]["message"]


async def test_serve_command_prints_ready_and_stops_cleanly_on_sigterm(tmp_path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "error::ResourceWarning"}
    proc = await trio.lowlevel.open_process(
        [
            sys.executable,
            "-m",
            "gui.cli",
            "--data-dir",
            str(tmp_path),
            "serve",
            "--ws-port",
            "0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-bootstrap",
            "--no-mdns",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        buf = b""
        with trio.fail_after(30):
            while b"\n" not in buf:
                chunk = await proc.stdout.receive_some(4096)
                assert chunk, "serve exited before it was ready"
                buf += chunk
        ready = json.loads(buf.split(b"\n")[0])
        assert ready["event"] == "ready" and ready["ws"].startswith("ws://127.0.0.1:")
        async with client(ready["ws"]) as c:
            assert "result" in await c.call("peer", {})
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                await proc.wait()
        assert proc.returncode == 0
        rest = buf + await _read_all(proc.stdout)
        assert b'"stopped"' in rest
        err = (await _read_all(proc.stderr)).decode()
        assert "ResourceWarning" not in err and "Traceback" not in err, err
    finally:
        if proc.returncode is None:
            proc.kill()


async def _read_all(stream) -> bytes:
    out = b""
    with trio.move_on_after(5):
        while chunk := await stream.receive_some(65536):
            out += chunk
    return out


async def _http_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    data = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some(65536):
            data += chunk
    await stream.aclose()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


async def test_web_app_files_and_api_share_one_origin(tmp_path) -> None:
    """p2p-webapp's client connects to ws://<page host>/ws: with --www the app and the API
    come from the same port."""
    app = tmp_path / "app"
    (app / "js").mkdir(parents=True)
    (app / "index.html").write_text("<html>chat app</html>")
    (app / "js" / "client.js").write_text("export const x = 1;")
    (tmp_path / "secret.txt").write_text("not for the browser")
    async with trio.open_nursery() as nursery:
        manager = await nursery.start(PeerManager(fast_config()).run)
        port = await nursery.start(WsApi(manager).serve, "127.0.0.1", 0, app)
        status, headers, body = await _http_get(port, "/")
        assert status == 200 and body == b"<html>chat app</html>"
        assert headers["content-type"] == "text/html"
        status, headers, body = await _http_get(port, "/js/client.js")
        assert status == 200 and body == b"export const x = 1;"
        assert "javascript" in headers["content-type"]
        status, _, body = await _http_get(port, "/rooms/42")  # a client-side route
        assert status == 200 and body == b"<html>chat app</html>"
        for sneaky in ("/../secret.txt", "/%2e%2e/secret.txt", "/js/../../secret.txt"):
            _, _, body = await _http_get(port, sneaky)
            assert b"not for the browser" not in body
        async with client(f"ws://127.0.0.1:{port}/ws") as c:
            assert "result" in await c.call("peer", {})
        await manager.close()
        nursery.cancel_scope.cancel()


async def test_without_www_plain_requests_get_404() -> None:
    async with api_server() as (url, _):
        port = int(url.split(":")[2].split("/")[0])
        status, _, body = await _http_get(port, "/")
        assert status == 404 and b"/ws" in body
