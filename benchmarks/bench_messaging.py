"""Messaging throughput and latency between two local peers, next to a raw TCP socket.

Prints, in one run: direct messages acknowledged per second (pipelined), direct-message round
trip latency p50/p99 (one message at a time, send → remote ack), topic messages delivered per
second, and the same figures for a raw TCP ping-pong over loopback, so ratios mean something on
whatever machine runs it.

    .venv/bin/python benchmarks/bench_messaging.py [--count N]
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from functools import partial
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.events import Event, TopicData
from core.libp2p_compat import quiet_library_logging
from core.peer import PeerConfig, new_peer

CHAT = "/bench/1.0.0"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


async def raw_tcp(count: int) -> tuple[float, list[float]]:
    """A 4-byte-length-framed echo over a plain loopback socket: the floor for everything."""

    async def echo(stream: trio.SocketStream) -> None:
        buf = b""
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            buf += data
            while len(buf) >= 4:
                (n,) = struct.unpack(">I", buf[:4])
                if len(buf) < 4 + n:
                    break
                await stream.send_all(buf[: 4 + n])
                buf = buf[4 + n :]

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        frame = struct.pack(">I", 40) + b"x" * 40

        async def recv_one() -> None:
            got = b""
            while len(got) < len(frame):
                got += await stream.receive_some(len(frame) - len(got))

        latencies = []
        for _ in range(count):
            t = time.perf_counter()
            await stream.send_all(frame)
            await recv_one()
            latencies.append(time.perf_counter() - t)
        rate = count / sum(latencies)
        await stream.aclose()
        nursery.cancel_scope.cancel()
    return rate, latencies


async def peers_bench(count: int) -> dict[str, float]:
    received: list[Event] = []
    cfg = PeerConfig(listen_addrs=["/ip4/127.0.0.1/tcp/0"], bootstrap=[], dht_ready_wait=0.1)
    out: dict[str, float] = {}
    async with trio.open_nursery() as nursery:
        a = await nursery.start(new_peer(cfg).run)
        b = await nursery.start(new_peer(PeerConfig(**{**cfg.__dict__}), received.append).run)
        b.start_protocol(CHAT)
        await a.connect(b.listen_addrs()[0])
        target = str(b.peer_id)
        await a.send(target, CHAT, "warm-up")

        t = time.perf_counter()
        msgs = [a.enqueue(target, CHAT, {"n": i}) for i in range(count)]
        for m in msgs:
            await m.wait()
        out["direct_rate"] = count / (time.perf_counter() - t)

        latencies = []
        for i in range(min(count, 500)):
            t = time.perf_counter()
            await a.send(target, CHAT, {"n": i})
            latencies.append(time.perf_counter() - t)
        out["direct_p50"], out["direct_p99"] = pct(latencies, 50), pct(latencies, 99)

        await a.subscribe("bench")
        await b.subscribe("bench")
        before = sum(isinstance(e, TopicData) for e in received)
        t = time.perf_counter()
        for i in range(count):
            await a.publish("bench", i)
        with trio.fail_after(120):
            while sum(isinstance(e, TopicData) for e in received) - before < count:
                await trio.sleep(0.001)
        out["topic_rate"] = count / (time.perf_counter() - t)
        a.stop()
        b.stop()
    return out


async def main(count: int) -> None:
    raw_rate, raw_lat = await raw_tcp(count)
    p = await peers_bench(count)
    print(f"messages per run: {count}")
    print(
        f"raw TCP ping-pong           {raw_rate:10.0f} round trips/s   "
        f"p50 {pct(raw_lat, 50) * 1e3:6.3f} ms  p99 {pct(raw_lat, 99) * 1e3:6.3f} ms"
    )
    print(
        f"direct messages, acked      {p['direct_rate']:10.0f} msg/s (pipelined)   "
        f"{p['direct_rate'] / raw_rate:6.3f} x raw"
    )
    print(
        f"direct message round trip   "
        f"p50 {p['direct_p50'] * 1e3:6.3f} ms  p99 {p['direct_p99'] * 1e3:6.3f} ms   "
        f"{pct(raw_lat, 50) / p['direct_p50']:6.3f} x raw (p50 speed)"
    )
    print(
        f"topic messages, delivered   {p['topic_rate']:10.0f} msg/s   "
        f"{p['topic_rate'] / raw_rate:6.3f} x raw"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    quiet_library_logging()
    trio.run(main, parser.parse_args().count)
