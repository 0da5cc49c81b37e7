"""Topic rejoin and presence between ``peerdesk serve`` processes, driven over the WebSocket
API the way a p2p-webapp web app drives it (issue 8)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from itertools import count
from pathlib import Path
from typing import Any

import trio

from tests.core.server.test_wsapi import Client, client

TOPIC = "room"
BOUND = 3.0
"""One heartbeat plus a round trip is the goal; this bound holds on a loaded 2-core box and is
far below the minute-long cut-off it guards against."""

_tokens = count()


@asynccontextmanager
async def serve(data_dir: Path) -> AsyncIterator[str]:
    """One ``peerdesk serve`` process on loopback; yields its WebSocket URL."""
    proc = await trio.lowlevel.open_process(
        [
            sys.executable,
            "-m",
            "gui.cli",
            "--data-dir",
            str(data_dir),
            "serve",
            "--ws-port",
            "0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-bootstrap",
            "--no-mdns",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        buf = b""
        with trio.fail_after(60):
            while b"\n" not in buf:
                chunk = await proc.stdout.receive_some(4096)  # type: ignore[union-attr]
                assert chunk, "serve exited before it was ready"
                buf += chunk
        yield json.loads(buf.split(b"\n")[0])["ws"]
    finally:
        proc.terminate()
        with trio.move_on_after(10):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()


async def _peer(app: Client) -> tuple[str, str]:
    """Creates the connection's peer; returns its id and a dialable address."""
    peer_id = (await app.call("peer", {}))["result"]["peerid"]
    info = (await app.call("info"))["result"]
    addr = next(a for a in info["addrs"] if "127.0.0.1" in a)
    return peer_id, addr if "/p2p/" in addr else f"{addr}/p2p/{peer_id}"


async def _ok(app: Client, method: str, params: Any = None) -> Any:
    answer = await app.call(method, params)
    assert "error" not in answer or not answer["error"], answer
    return answer.get("result")


async def _delivered(sender: Client, receiver: Client) -> None:
    token = f"p{next(_tokens)}"
    result = await _ok(sender, "publish", {"topic": TOPIC, "data": token})
    assert result["peers"] >= 1
    await receiver.push("topicData", timeout=BOUND, topic=TOPIC, data=token)


async def test_rejoin_between_processes_in_a_line(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        urls = [await stack.enter_async_context(serve(tmp_path / n)) for n in "abc"]
        a, b, c = [await stack.enter_async_context(client(u)) for u in urls]
        ids = {}
        for name, app in zip("abc", (a, b, c), strict=True):
            ids[name], addr = await _peer(app)
            ids[name + "_addr"] = addr
        await _ok(a, "connect", {"addr": ids["b_addr"]})
        await _ok(c, "connect", {"addr": ids["b_addr"]})
        for app in (a, b, c):
            await _ok(app, "subscribe", {"topic": TOPIC})
        await _delivered(a, c)
        await _delivered(c, a)
        for delay in (0.1, 1.0, 3.0):
            await _ok(a, "unsubscribe", {"topic": TOPIC})
            await trio.sleep(delay)
            await _ok(a, "subscribe", {"topic": TOPIC})
            await _delivered(a, b)
            await _delivered(a, c)
            await _delivered(c, a)
            await _delivered(b, a)


async def test_late_subscribers_get_joins_across_processes_and_within_one(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        url_1 = await stack.enter_async_context(serve(tmp_path / "one"))
        url_2 = await stack.enter_async_context(serve(tmp_path / "two"))
        a = await stack.enter_async_context(client(url_1))
        b = await stack.enter_async_context(client(url_2))
        sibling = await stack.enter_async_context(client(url_2))  # same process as b
        a_id, a_addr = await _peer(a)
        b_id, _ = await _peer(b)
        s_id, _ = await _peer(sibling)
        await _ok(b, "connect", {"addr": a_addr})
        await _ok(a, "subscribe", {"topic": TOPIC})
        await _ok(b, "subscribe", {"topic": TOPIC})
        # The sibling comes last: both are already there and arrive as joins at once.
        await _ok(sibling, "subscribe", {"topic": TOPIC})
        await sibling.push("peerChange", timeout=2.0, topic=TOPIC, peerid=b_id, joined=True)
        await sibling.push("peerChange", timeout=2.0, topic=TOPIC, peerid=a_id, joined=True)
        # And the listing says what the events said.
        listed = await _ok(sibling, "listpeers", {"topic": TOPIC})
        assert set(listed["peers"]) >= {a_id, b_id}
        # a, in the other process, hears of both as well.
        await a.push("peerChange", timeout=BOUND, topic=TOPIC, peerid=s_id, joined=True)
        await a.push("peerChange", timeout=BOUND, topic=TOPIC, peerid=b_id, joined=True)
