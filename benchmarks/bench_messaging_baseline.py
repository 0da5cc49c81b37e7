"""Bare py-libp2p 0.8.1, no Peerdesk code: the baseline bench_messaging.py compares against.

One role per process (bench_messaging.py starts two of them and reads one JSON line from each):

- ``ack-server`` / ``ack-client``: request → ack on one Noise + Yamux stream, a 4-byte length
  and a JSON object each way, shaped like Peerdesk's direct-message frames
  (``{"type":"data","id":…,"data":base64(json)}`` answered by ``{"type":"ack","id":…}``), with
  ``--window`` requests in flight. Written the plain way an application would write it on the
  library: read the length, read the body, parse, answer.
- ``topic-server`` / ``topic-client``: the library's own GossipSub and Pubsub configured as
  Peerdesk configures them (meshsub 1.2.0 first, heartbeat, degree, strict signing), so the
  mesh forms as fast and the wire carries the same RPCs; the client publishes ``--count``
  messages of the same compact JSON, paced on the outbound queue as Peerdesk paces (the
  library drops RPCs past 32 queued), and the server reports when it has them all, or how many
  it had when none came for ``IDLE`` seconds (the library drops messages that find its
  32-slot subscription channel full). ``--meshsub 1.1`` offers only 1.1.0 / 1.0.0 (no
  IDONTWANT), as this baseline did before it matched Peerdesk's protocols.

Hosts use Ed25519 keys, as Peerdesk identities are (p2p-webapp's key format), so both sides
pay the same signature checks.

This file must not import ``core``: importing it installs Peerdesk's compat changes.

    .venv/bin/python benchmarks/bench_messaging_baseline.py ack-server
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
import sys
import time

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service

ACK_PROTO = TProtocol("/bench-bare/ack/1.0.0")
TOPIC = "bench"
IDLE = 5.0
MESHSUB = {
    "1.2": ["/meshsub/1.2.0", "/meshsub/1.1.0", "/meshsub/1.0.0"],
    "1.1": ["/meshsub/1.1.0", "/meshsub/1.0.0"],
}


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def bare_host():  # type: ignore[no-untyped-def]
    key_pair = create_new_key_pair()
    noise = NoiseTransport(key_pair, noise_privkey=new_x25519_key_pair().private_key)
    return new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
    )


async def read_exactly(stream, n: int) -> bytes:  # type: ignore[no-untyped-def]
    buf = b""
    while len(buf) < n:
        chunk = await stream.read(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


async def read_frame(stream) -> dict:  # type: ignore[no-untyped-def,type-arg]
    (length,) = struct.unpack(">I", await read_exactly(stream, 4))
    return json.loads(await read_exactly(stream, length))


def frame(obj: dict) -> bytes:  # type: ignore[type-arg]
    body = json.dumps(obj, separators=(",", ":")).encode()
    return struct.pack(">I", len(body)) + body


def listen_addr(host) -> str:  # type: ignore[no-untyped-def]
    return str(host.get_addrs()[0])


LISTEN = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]


async def ack_server() -> None:
    host = bare_host()

    async def answer(stream) -> None:  # type: ignore[no-untyped-def]
        try:
            while True:
                obj = await read_frame(stream)
                await stream.write(frame({"type": "ack", "id": obj["id"]}))
        except Exception:
            return

    host.set_stream_handler(ACK_PROTO, answer)
    async with host.run(LISTEN):
        say(addr=listen_addr(host))
        await trio.sleep_forever()


async def ack_client(addr: str, count: int, window: int) -> None:
    host = bare_host()
    async with host.run(LISTEN):
        await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))
        stream = await host.new_stream(
            info_from_p2p_addr(multiaddr.Multiaddr(addr)).peer_id, [ACK_PROTO]
        )
        sent_at: dict[str, float] = {}
        latencies: list[float] = []
        room = trio.Semaphore(window)
        n_warm = 200

        async def acks() -> None:
            for _ in range(count + n_warm):
                obj = await read_frame(stream)
                latencies.append(time.perf_counter() - sent_at.pop(obj["id"]))
                room.release()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(acks)
            start = 0.0
            for i in range(count + n_warm):
                if i == n_warm:
                    start = time.perf_counter()
                await room.acquire()
                msg_id = f"{time.time_ns()}-{i}"
                data = base64.b64encode(json.dumps({"n": i, "text": "hello"}).encode()).decode()
                sent_at[msg_id] = time.perf_counter()
                await stream.write(frame({"type": "data", "id": msg_id, "data": data}))
        elapsed = time.perf_counter() - start
        say(rate=count / elapsed, latencies=latencies[n_warm:])
        await stream.reset()


def bare_gossip(host, meshsub: str) -> tuple[Pubsub, GossipSub]:  # type: ignore[no-untyped-def]
    router = GossipSub(
        protocols=[TProtocol(p) for p in MESHSUB[meshsub]],
        degree=6,
        degree_low=5,
        degree_high=12,
        heartbeat_interval=0.5,  # type: ignore[arg-type]
        heartbeat_initial_delay=0.05,
        do_px=True,
        spam_protection_enabled=False,
    )
    return Pubsub(host, router, strict_signing=True), router


async def topic_server(count: int, meshsub: str) -> None:
    host = bare_host()
    pubsub, router = bare_gossip(host, meshsub)
    async with (
        host.run(LISTEN),
        background_trio_service(pubsub),
        background_trio_service(router),
    ):
        await pubsub.wait_until_ready()
        sub = await pubsub.subscribe(TOPIC)
        say(addr=listen_addr(host))
        got, first, last = 0, 0.0, 0.0
        while got < count:
            with trio.move_on_after(IDLE):
                await sub.get()
                got += 1
                last = time.perf_counter()
                if got == 1:
                    first = last
                continue
            break
        say(received=got, seconds=last - first)


async def topic_client(addr: str, count: int, meshsub: str) -> None:
    host = bare_host()
    pubsub, router = bare_gossip(host, meshsub)
    async with (
        host.run(LISTEN),
        background_trio_service(pubsub),
        background_trio_service(router),
    ):
        await pubsub.wait_until_ready()
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        await host.connect(info)
        await pubsub.subscribe(TOPIC)
        with trio.fail_after(20):
            while info.peer_id not in router.mesh.get(TOPIC, ()):
                await trio.sleep(0.02)
        start = time.perf_counter()
        for i in range(count):
            while max((len(q) for q in list(pubsub.peer_queues.values())), default=0) >= 16:
                await trio.sleep(0.002)
            await pubsub.publish(TOPIC, json.dumps({"n": i}, separators=(",", ":")).encode())
        say(published=count, seconds=time.perf_counter() - start)
        await trio.sleep(30)  # the server's line ends the run; stay until it is read


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "role", choices=["ack-server", "ack-client", "topic-server", "topic-client"]
    )
    parser.add_argument("--addr", default="")
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--meshsub", choices=sorted(MESHSUB), default="1.2")
    args = parser.parse_args()
    if args.role == "ack-server":
        trio.run(ack_server)
    elif args.role == "ack-client":
        trio.run(ack_client, args.addr, args.count, args.window)
    elif args.role == "topic-server":
        trio.run(topic_server, args.count, args.meshsub)
    else:
        trio.run(topic_client, args.addr, args.count, args.meshsub)


if __name__ == "__main__":
    import logging

    logging.disable(logging.CRITICAL)
    sys.exit(main())
