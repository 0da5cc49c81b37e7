"""Interop with js-libp2p 3.x (tests/interop/jspeer.mjs): topics, a direct protocol and the
DHT, both ways, over TCP + Noise + Yamux on loopback."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from core.events import PeerData, TopicData
from core.libp2p_compat import find_providers_network
from core.network.dht import namespace_cid
from tests.conftest import peer_group

HERE = Path(__file__).parent / "interop"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed")


@pytest.fixture(scope="module")
def js_installed() -> None:
    if not (HERE / "node_modules" / "libp2p").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=HERE,
            check=True,
            timeout=300,
        )


class JsPeer:
    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self.answers: dict[int, dict[str, Any]] = {}
        self.ready: dict[str, Any] = {}
        self._ids = itertools.count()
        self._changed = trio.Event()

    async def pump(self) -> None:
        buf = b""
        assert self.proc.stdout is not None
        while chunk := await self.proc.stdout.receive_some(65536):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                msg = json.loads(line)
                if msg.get("event") == "ready":
                    self.ready = msg
                elif "event" in msg:
                    self.events.append(msg)
                else:
                    self.answers[msg["id"]] = msg
                self._changed.set()
                self._changed = trio.Event()

    async def wait(self, predicate, timeout: float = 20.0) -> Any:
        with trio.fail_after(timeout):
            while not (result := predicate()):
                await self._changed.wait()
            return result

    async def cmd(self, cmd: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        rid = next(self._ids)
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all(
            (json.dumps({"cmd": cmd, "id": rid, **args}) + "\n").encode()
        )
        answer = await self.wait(lambda: self.answers.get(rid), timeout)
        assert answer["ok"], answer
        return answer


async def start_js(nursery: trio.Nursery) -> JsPeer:
    proc = await trio.lowlevel.open_process(
        [NODE, str(HERE / "jspeer.mjs")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=HERE
    )
    js = JsPeer(proc)
    nursery.start_soon(js.pump)
    await js.wait(lambda: js.ready)
    return js


async def stop_js(js: JsPeer) -> None:
    assert js.proc.stdin is not None
    await js.proc.stdin.aclose()
    with trio.move_on_after(5):
        await js.proc.wait()
    if js.proc.returncode is None:
        js.proc.kill()


@pytest.mark.usefixtures("js_installed")
async def test_topics_and_direct_protocol_both_ways() -> None:
    async with peer_group(1) as [(py, rec)], trio.open_nursery() as nursery:
        js = await start_js(nursery)
        js_id = js.ready["peerId"]
        await py.connect(js.ready["addrs"][0])

        await js.cmd("subscribe", topic="interop")
        await py.subscribe("interop")
        with trio.fail_after(20):
            while str(py.peer_id) not in (await js.cmd("topicPeers", topic="interop"))["mesh"]:
                await trio.sleep(0.1)
        assert js_id in py.list_peers("interop")
        await py.publish("interop", {"from": "python"})
        got = await js.wait(lambda: [e for e in js.events if e["event"] == "topic"])
        assert got[0]["data"] == {"from": "python"} and got[0]["from"] == str(py.peer_id)
        await js.cmd("publish", topic="interop", data={"from": "js"})
        await rec.wait_for(lambda: TopicData("interop", js_id, {"from": "js"}) in rec.events)

        py.start_protocol("/chat/1.0.0")
        await js.cmd("handle", protocol="/chat/1.0.0")
        await py.send(js_id, "/chat/1.0.0", {"text": "hello js"})  # returns on js's ack
        data = [e for e in js.events if e["event"] == "data"]
        assert data and data[0]["data"] == {"text": "hello js"}
        answer = await js.cmd(
            "send", peer=str(py.peer_id), protocol="/chat/1.0.0", data={"text": "hello python"}
        )
        assert answer["attempts"] == 1
        await rec.wait_for(lambda: rec.of(PeerData))
        assert rec.of(PeerData)[0] == PeerData(js_id, "/chat/1.0.0", {"text": "hello python"})
        await stop_js(js)


@pytest.mark.usefixtures("js_installed")
async def test_dht_provide_and_find_both_ways() -> None:
    async with peer_group(1) as [(py, _)], trio.open_nursery() as nursery:
        js = await start_js(nursery)
        js_id = js.ready["peerId"]
        await js.cmd("dial", addr=py.listen_addrs()[0])  # js dials this time
        with trio.fail_after(20):
            while py.dht.routing_table_size() == 0 or (await js.cmd("routingTable"))["size"] == 0:
                await trio.sleep(0.1)

        py_key = namespace_cid("interop-from-python")
        assert await py.dht.kad.provide(py_key)
        found = await js.cmd("findProviders", key=py_key, timeoutMs=10000)
        assert str(py.peer_id) in [p["id"] for p in found["providers"]]

        js_key = namespace_cid("interop-from-js")
        await js.cmd("provide", key=js_key)
        providers = await find_providers_network(py.dht.kad, js_key)
        assert js_id in [str(p.peer_id) for p in providers]
        await stop_js(js)


@pytest.mark.usefixtures("js_installed")
async def test_rejoins_on_either_side_do_not_cut_off_a_js_peer() -> None:
    """After a leave + join by Peerdesk or by js-libp2p, messages flow both ways at once
    (js floods its own messages as go does; Peerdesk now does too, and gossips during
    the backoff)."""
    async with peer_group(1) as [(py, rec)], trio.open_nursery() as nursery:
        js = await start_js(nursery)
        js_id = js.ready["peerId"]
        await py.connect(js.ready["addrs"][0])
        await js.cmd("subscribe", topic="again")
        await py.subscribe("again")
        with trio.fail_after(20):
            while str(py.peer_id) not in (await js.cmd("topicPeers", topic="again"))["mesh"]:
                await trio.sleep(0.1)

        async def both_ways(n: int) -> None:
            assert await py.publish("again", {"py": n}) == 1
            await js.wait(
                lambda: [e for e in js.events if e["event"] == "topic" and e["data"] == {"py": n}],
                timeout=3,
            )
            await js.cmd("publish", topic="again", data={"js": n})
            await rec.wait_for(lambda: TopicData("again", js_id, {"js": n}) in rec.events, 3)

        for n, side in enumerate(["py", "js", "py", "js"]):
            if side == "py":
                await py.unsubscribe("again")
                await trio.sleep(0.5)
                await py.subscribe("again")
            else:
                await js.cmd("unsubscribe", topic="again")
                await trio.sleep(0.5)
                await js.cmd("subscribe", topic="again")
                with trio.fail_after(5):
                    while js_id not in py.list_peers("again"):
                        await trio.sleep(0.05)
            await both_ways(n)
        await stop_js(js)
