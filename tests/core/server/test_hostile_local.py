"""Hostile local callers of ``peerdesk serve`` (issue 10, item 2): web pages of other origins and
DNS-rebinding Host names must not reach the API or the app's files; honest clients go on.

Each test asserts the server and the victim's peer alive, an honest client answered within a
second, RSS growth bounded, and the victim's data intact."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio
from trio_websocket import HandshakeError, open_websocket_url

from core.server.manager import MAX_PEERS, PeerManager
from core.server.wsapi import WsApi
from tests.conftest import fast_config
from tests.core.server.test_wsapi import Client, client

HONEST_REPLY = 1.0
"""An honest client's request is answered within this many seconds, whatever the attacker does."""


def rss_bytes() -> int:
    """This process's resident set now (the server runs in it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@asynccontextmanager
async def served(
    tmp_path: Path,
    www: Path | None = None,
    allow_origins: tuple[str, ...] = (),
    max_peers: int = MAX_PEERS,
) -> AsyncIterator[tuple[int, PeerManager, WsApi]]:
    async with trio.open_nursery() as nursery:
        manager = PeerManager(fast_config(files_dir=str(tmp_path)), max_peers)
        await nursery.start(manager.run)
        api = WsApi(manager, allow_origins)
        port = await nursery.start(api.serve, "127.0.0.1", 0, www)
        try:
            yield port, manager, api
        finally:
            with trio.CancelScope(shield=True), trio.fail_after(20):
                await manager.close()
            nursery.cancel_scope.cancel()


async def honest_check(victim: Client, path: str, content: bytes) -> None:
    """The victim's peer answers within a second and its stored file reads back intact."""
    with trio.fail_after(HONEST_REPLY):
        info = await victim.call("info")
    assert "result" in info, info
    listing = await victim.call("listfiles", {"peerid": info["result"]["peerid"]})
    assert "result" in listing, listing
    files = await victim.push("peerFiles", peerid=info["result"]["peerid"])
    file_cid = files["params"]["entries"][path]["cid"]
    victim.request_nowait("getfile", {"cid": file_cid})
    await victim.ws.send_message(victim._pending_send)
    got = await victim.push("gotFile", cid=file_cid)
    assert got["params"]["success"]
    assert base64.b64decode(got["params"]["content"]["content"]) == content


async def victim_with_file(victim: Client, path: str, content: bytes) -> None:
    assert "result" in await victim.call("peer", {})
    stored = await victim.call(
        "storefile", {"path": path, "content": base64.b64encode(content).decode()}
    )
    assert "result" in stored, stored


async def raw_request(port: int, head: str) -> bytes:
    """Send a hand-written request head; return whatever comes back before the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(head.encode())
    data = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some(65536):
            data += chunk
    await stream.aclose()
    return data


def _upgrade(host: str, origin: str | None) -> str:
    origin_line = f"Origin: {origin}\r\n" if origin is not None else ""
    return (
        f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"{origin_line}\r\n"
    )


async def test_foreign_origins_and_rebinding_hosts_are_refused(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "index.html").write_text("<html>app</html>")
    allowed = "http://localhost:5173"
    async with served(tmp_path / "data", app, (allowed,)) as (port, manager, _):
        url = f"ws://127.0.0.1:{port}/ws"
        async with client(url) as victim:
            await victim_with_file(victim, "notes/secret.txt", b"the user's own words")
            before = rss_bytes()
            for origin in ("http://evil.example", "null", "http://127.0.0.1:1", "file://"):
                try:
                    async with open_websocket_url(
                        url, extra_headers=[(b"Origin", origin.encode())]
                    ):
                        raise AssertionError(f"origin {origin} was let in")
                except HandshakeError as exc:
                    assert getattr(exc, "status_code", 403) == 403
            for host in ("evil.example", "evil.example:80", "127.0.0.1.evil.example", ""):
                answer = await raw_request(port, _upgrade(host, None))
                assert answer.startswith(b"HTTP/1.1 403"), answer[:80]
                page = await raw_request(port, f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")
                assert page.startswith(b"HTTP/1.1 403") and b"<html>" not in page
            assert len(manager.peers) == 1  # none of them got a peer

            # The page --www serves, and an explicitly allowed origin, do get in.
            for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}", allowed):
                async with open_websocket_url(
                    url, extra_headers=[(b"Origin", origin.encode())]
                ) as ws:
                    await ws.send_message(
                        '{"requestid":0,"method":"info","params":{},"isresponse":false}'
                    )
                    with trio.fail_after(HONEST_REPLY):
                        assert '"code":404' in await ws.get_message()  # no peer yet, but heard
            page = await raw_request(port, f"GET / HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n")
            assert page.startswith(b"HTTP/1.1 200") and page.endswith(b"<html>app</html>")
            await honest_check(victim, "notes/secret.txt", b"the user's own words")
            assert rss_bytes() - before < 32 * 1024 * 1024


async def test_without_www_no_browser_origin_is_allowed(tmp_path: Path) -> None:
    async with served(tmp_path) as (port, manager, _):
        url = f"ws://127.0.0.1:{port}/ws"
        try:
            async with open_websocket_url(
                url, extra_headers=[(b"Origin", f"http://127.0.0.1:{port}".encode())]
            ):
                raise AssertionError("a browser page got in without --www or --allow-origin")
        except HandshakeError:
            pass
        async with client(url) as programmatic:  # no Origin: a program, not a web page
            assert "result" in await programmatic.call("peer", {})
        assert not manager.peers or len(manager.peers) <= 1


async def test_small_ones_surrogates_symlinks_and_nul(tmp_path: Path) -> None:
    """Issue 10 item 8: a lone surrogate in a protocol name or topic is a 400 (it once killed
    the client's peer at its first identify); a sub-folder's index.html symlinked outside the
    app is not served; a %00 path gets an answer. RSS bound: 32 MiB."""
    app = tmp_path / "app"
    (app / "sub").mkdir(parents=True)
    (app / "index.html").write_text("<html>app</html>")
    (tmp_path / "secret.html").write_text("not for the browser")
    (app / "sub" / "index.html").symlink_to(tmp_path / "secret.html")
    async with served(tmp_path / "data", app) as (port, manager, _):
        url = f"ws://127.0.0.1:{port}/ws"
        async with client(url) as victim, client(url) as other:
            await victim_with_file(victim, "keep.txt", b"kept")
            before = rss_bytes()
            for method, params in (
                ("start", '{"protocol":"\\ud800"}'),
                ("subscribe", '{"topic":"a\\udfffb"}'),
                ("send", '{"peer":"x","protocol":"\\ud800","data":1}'),
            ):
                text = f'{{"requestid":77,"method":"{method}","params":{params}}}'
                victim.responses.pop(77, None)
                reply = await victim.raw(text, 77)
                assert reply["error"]["code"] == 400, reply
            assert "result" in await other.call("peer", {})  # identify runs between them
            peerid = (await victim.call("info"))["result"]["peerid"]
            with trio.fail_after(10):
                while not manager.peers[peerid].host.get_network().get_connections():
                    await trio.sleep(0.05)
            for path in ("/sub/", "/sub"):
                page = await raw_request(port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert b"not for the browser" not in page
            page = await raw_request(port, "GET /%00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert page.startswith(b"HTTP/1.1 400")
            page = await raw_request(port, "GET /a%00b/c HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert page.startswith(b"HTTP/1.1 400")
            assert manager.peers[peerid].running
            await honest_check(victim, "keep.txt", b"kept")
            assert rss_bytes() - before < 32 * 1024 * 1024
