"""Peerdesk's messaging next to bare py-libp2p 0.8.1 doing the same work, in one run.

Every figure comes from two processes on this machine (a sender and a receiver), and is printed
next to the same workload on bare py-libp2p (benchmarks/bench_messaging_baseline.py), measured
in the same run, as a ratio:

- direct messages acknowledged per second with 32 in flight (Peerdesk: ``Peer.enqueue`` to the
  remote's ack, exactly-once and in order; bare: a plain request → ack loop on one stream,
  Noise + Yamux, 4-byte length + ~100 B JSON each way);
- send → ack latency p50/p99, with 32 in flight and one at a time;
- topic messages delivered per second (GossipSub, paced publishing, how many of them arrived);
  bare py-libp2p is configured as Peerdesk is (meshsub 1.2.0, Ed25519 keys, the same JSON), and
  once more offering meshsub 1.1 only, as this baseline did before (no IDONTWANT traffic).

    .venv/bin/python benchmarks/bench_messaging.py [--count N] [--ws]

The machine's load moves every figure; the ratios of one run are what to compare.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHAT = "/bench/1.0.0"
TOPIC = "bench"
IDLE = 5.0
"""Seconds without a topic message after which a receiver reports what it has."""
BASELINE = str(ROOT / "benchmarks" / "bench_messaging_baseline.py")


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


# -- Peerdesk roles (run in their own process) ---------------------------------------------------


def _config() -> Any:
    from core.peer import PeerConfig

    return PeerConfig(
        listen_addrs=["/ip4/127.0.0.1/tcp/0"], bootstrap=[], dht_ready_wait=0.1, mdns=False
    )


async def peer_server(count: int) -> None:
    """Receives direct messages on CHAT and ``count`` topic messages, then says how long the
    topic messages took from the first to the last (or how many came, if they stopped coming
    for ``IDLE`` seconds)."""
    from core.events import Event, TopicData
    from core.peer import new_peer

    got = 0
    first = last = 0.0
    arrived = trio.Event()

    def sink(event: Event) -> None:
        nonlocal got, first, last, arrived
        if isinstance(event, TopicData):
            got += 1
            last = time.perf_counter()
            if got == 1:
                first = last
            arrived.set()

    async with trio.open_nursery() as nursery:
        peer = await nursery.start(new_peer(_config(), sink).run)
        peer.start_protocol(CHAT)
        await peer.subscribe(TOPIC)
        say(addr=peer.listen_addrs()[0])
        while got < count:
            arrived = trio.Event()
            with trio.move_on_after(IDLE if got else 120) as waiting:
                await arrived.wait()
            if waiting.cancelled_caught:
                break
        say(received=got, seconds=last - first)
        peer.stop()


async def peer_client(addr: str, count: int, window: int, topic: bool) -> None:
    """``count`` direct messages with ``window`` in flight, then (``topic``) ``count`` topic
    messages once the receiver is in our mesh."""
    from core import libp2p_compat as compat
    from core.events import Delivery, Event
    from core.peer import new_peer

    acked_at: dict[str, float] = {}

    def sink(event: Event) -> None:
        if isinstance(event, Delivery) and event.delivered:
            acked_at[event.msg_id] = time.perf_counter()

    out: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        peer = await nursery.start(new_peer(_config(), sink).run)
        target = await peer.connect(addr)
        warm = 200
        sent_at: dict[str, float] = {}
        inflight: deque[Any] = deque()
        start = 0.0
        for i in range(count + warm):
            if i == warm:
                start = time.perf_counter()
            if len(inflight) >= window:
                await inflight.popleft().wait()
            msg = peer.enqueue(target, CHAT, {"n": i, "text": "hello"})
            sent_at[msg.msg_id] = time.perf_counter()
            inflight.append(msg)
        while inflight:
            await inflight.popleft().wait()
        out["rate"] = count / (time.perf_counter() - start)
        ids = list(sent_at)[warm:]
        out["latencies"] = [acked_at[i] - sent_at[i] for i in ids]
        if topic:
            await peer.subscribe(TOPIC)
            router = peer.router
            with trio.fail_after(20):
                while not compat.mesh_peers(router, TOPIC):
                    await trio.sleep(0.02)
            t = time.perf_counter()
            for i in range(count):
                if await peer.publish(TOPIC, {"n": i}) == 0:
                    raise RuntimeError("a topic message reached nobody")
            out["published_seconds"] = time.perf_counter() - t
        say(**out)
        if topic:
            await trio.sleep(30)  # the receiver's line ends the run
        peer.stop()


# -- through `peerdesk serve`'s WebSocket API ---------------------------------------------------


class WsClient:
    """One web app's connection: requests by id, responses matched, pushes counted."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0
        self.waiting: dict[int, trio.Event] = {}
        self.answers: dict[int, dict[str, Any]] = {}
        self.pushes = 0

    async def pump(self) -> None:
        while True:
            msg = json.loads(await self.ws.get_message())
            if msg.get("isresponse"):
                rid = msg["requestid"]
                self.answers[rid] = msg
                self.waiting.pop(rid).set()
            else:
                self.pushes += 1

    async def request(self, method: str, params: Any) -> tuple[int, trio.Event]:
        self.next_id += 1
        done = self.waiting[self.next_id] = trio.Event()
        await self.ws.send_message(
            json.dumps(
                {"requestid": self.next_id, "method": method, "params": params, "isresponse": False}
            )
        )
        return self.next_id, done

    async def call(self, method: str, params: Any) -> Any:
        rid, done = await self.request(method, params)
        with trio.fail_after(30):
            await done.wait()
        answer = self.answers.pop(rid)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer.get("result")


def start_serve(data_dir: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "gui.cli", "--data-dir", data_dir, "serve", "--ws-port", "0"),
            *("--listen", "/ip4/127.0.0.1/tcp/0", "--no-bootstrap", "--no-mdns"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())["ws"]


async def ws_bench(count: int, window: int) -> dict[str, Any]:
    """Two serve processes, one web app on each; ``count`` sends with ``window`` answers
    outstanding (a send is answered when the remote peer acked it)."""
    import tempfile

    from trio_websocket import open_websocket_url

    with tempfile.TemporaryDirectory() as tmp:
        procs = [start_serve(f"{tmp}/{name}") for name in ("a", "b")]
        try:
            async with (
                open_websocket_url(procs[0][1]) as wa,
                open_websocket_url(procs[1][1]) as wb,
                trio.open_nursery() as nursery,
            ):
                a, b = WsClient(wa), WsClient(wb)
                nursery.start_soon(a.pump)
                nursery.start_soon(b.pump)
                await a.call("peer", {})
                pb = (await b.call("peer", {}))["peerid"]
                await b.call("start", {"protocol": "chat"})
                addr = (await b.call("info", {}))["addrs"][0]
                await a.call("connect", {"addr": f"{addr}/p2p/{pb}"})
                warm = 200
                inflight: deque[trio.Event] = deque()
                start = 0.0
                for i in range(count + warm):
                    if i == warm:
                        start = time.perf_counter()
                    if len(inflight) >= window:
                        await inflight.popleft().wait()
                    params = {"peer": pb, "protocol": "chat", "data": {"n": i, "text": "hello"}}
                    inflight.append((await a.request("send", {**params, "ack": i}))[1])
                while inflight:
                    await inflight.popleft().wait()
                rate = count / (time.perf_counter() - start)
                errors = sum("error" in m for m in a.answers.values())
                nursery.cancel_scope.cancel()
        finally:
            for proc, _ in procs:
                proc.terminate()
                proc.wait()
    return {"rate": rate, "errors": errors}


# -- the driver ----------------------------------------------------------------------------------


class Proc:
    """A role in its own process; its stdout is one JSON object per line."""

    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen(
            [sys.executable, *args], stdout=subprocess.PIPE, text=True, cwd=ROOT
        )

    def line(self) -> dict[str, Any]:
        assert self.p.stdout is not None
        text = self.p.stdout.readline()
        if not text:
            raise RuntimeError(f"{self.p.args} ended without an answer")
        return json.loads(text)  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.p.kill()
        self.p.wait()


def run_pair(
    server: list[str], client: list[str], *, topic: bool
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    srv = Proc(*server)
    try:
        addr = srv.line()["addr"]
        cli = Proc(*client, "--addr", addr)
        try:
            result = cli.line()
            return result, (srv.line() if topic else None)
        finally:
            cli.stop()
    finally:
        srv.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--role", choices=["server", "client"])
    parser.add_argument("--addr", default="")
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--topic", action="store_true")
    parser.add_argument("--ws", action="store_true", help="also through peerdesk serve")
    args = parser.parse_args()
    if args.role:
        from core.libp2p_compat import quiet_library_logging

        quiet_library_logging()
        if args.role == "server":
            trio.run(peer_server, args.count)
        else:
            trio.run(peer_client, args.addr, args.count, args.window, args.topic)
        return

    n = str(args.count)
    me = str(Path(__file__).resolve())
    bare, _ = run_pair(
        [BASELINE, "ack-server"], [BASELINE, "ack-client", "--count", n], topic=False
    )
    ours, ours_topic = run_pair(
        [me, "--role", "server", "--count", n],
        [me, "--role", "client", "--count", n, "--topic"],
        topic=True,
    )
    seq = str(min(args.count, 500))
    bare1, _ = run_pair(
        [BASELINE, "ack-server"],
        [BASELINE, "ack-client", "--count", seq, "--window", "1"],
        topic=False,
    )
    ours1, _ = run_pair(
        [me, "--role", "server", "--count", seq],
        [me, "--role", "client", "--count", seq, "--window", "1"],
        topic=False,
    )
    _, bare_topic = run_pair(
        [BASELINE, "topic-server", "--count", n],
        [BASELINE, "topic-client", "--count", n],
        topic=True,
    )
    _, bare11_topic = run_pair(
        [BASELINE, "topic-server", "--count", n, "--meshsub", "1.1"],
        [BASELINE, "topic-client", "--count", n, "--meshsub", "1.1"],
        topic=True,
    )
    assert ours_topic is not None and bare_topic is not None and bare11_topic is not None
    ws = trio.run(ws_bench, args.count, 32) if args.ws else None

    def lat(r: dict[str, Any]) -> str:
        p50, p99 = pct(r["latencies"], 50) * 1e3, pct(r["latencies"], 99) * 1e3
        return f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"

    def topic_rate(r: dict[str, Any]) -> float:
        return float(r["received"] / r["seconds"]) if r["seconds"] else 0.0

    ours_tr, bare_tr, bare11_tr = map(topic_rate, (ours_topic, bare_topic, bare11_topic))
    print(f"two processes on this machine, {args.count} messages each (ratios: same run)")
    print(
        f"direct messages acked, 32 in flight   Peerdesk {ours['rate']:7.0f}/s   "
        f"bare {bare['rate']:7.0f}/s   {ours['rate'] / bare['rate']:5.2f}x bare"
    )
    print(f"  send -> ack, 32 in flight           Peerdesk {lat(ours)}   bare {lat(bare)}")
    print(f"  send -> ack, one at a time          Peerdesk {lat(ours1)}   bare {lat(bare1)}")
    print(
        f"topic messages delivered              Peerdesk {ours_tr:7.0f}/s   "
        f"bare {bare_tr:7.0f}/s   {ours_tr / bare_tr:5.2f}x bare   "
        f"(received {ours_topic['received']} / {bare_topic['received']} of {args.count})"
    )
    print(
        f"  bare offering meshsub 1.1 only                       bare {bare11_tr:7.0f}/s   "
        f"{ours_tr / bare11_tr:5.2f}x bare   (received {bare11_topic['received']})"
    )
    if ws is not None:
        print(
            f"through peerdesk serve (WebSocket)    Peerdesk {ws['rate']:7.0f}/s   "
            f"bare {bare['rate']:7.0f}/s   {ws['rate'] / bare['rate']:5.2f}x bare   "
            f"({ws['errors']} sends failed)"
        )


if __name__ == "__main__":
    main()
