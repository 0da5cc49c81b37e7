"""How long a peer that leaves and rejoins a topic is cut off: Peerdesk's GossipSub next to
bare py-libp2p 0.8.1 GossipSub, in one run, on the same line of three hosts (A-B-C, A and C
not connected), with Peerdesk's settings (heartbeat 0.5 s, D=6).

Prints, for each: time from A's rejoin until A's message reaches C (through B), until C's
message reaches A, and until A and B are in each other's mesh again. Bare py-libp2p takes a
minute or more for some of these; each wait is capped at ``--cap`` seconds.

    .venv/bin/python benchmarks/bench_topic_rejoin.py [--cap 90]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import libp2p_compat as compat
from core.libp2p_compat import quiet_library_logging
from tests.core.libp2p_compat.test_compat_pubsub import bare_pubsub as node

TOPIC = "bench"


async def dial(a: IHost, b: IHost) -> None:
    addr = f"{b.get_addrs()[0]}"
    if "/p2p/" not in addr:
        addr += f"/p2p/{b.get_id()}"
    await a.connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))


async def first_arrival(pubsub: Pubsub, sub: object, payload: bytes, cap: float) -> float | None:
    """Publishes ``payload`` every 0.1 s from ``pubsub`` until ``sub`` receives one of them."""
    start = time.monotonic()
    got = trio.Event()

    async def listen() -> None:
        while True:
            msg = await sub.get()  # type: ignore[attr-defined]
            if msg.data.startswith(payload):
                got.set()
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(listen)
        with trio.move_on_after(cap):
            n = 0
            while not got.is_set():
                await pubsub.publish(TOPIC, payload + str(n).encode())
                n += 1
                with trio.move_on_after(0.1):
                    await got.wait()
        nursery.cancel_scope.cancel()
    return time.monotonic() - start if got.is_set() else None


async def run(
    label: str, router_cls: type[GossipSub], pubsub_cls: type[Pubsub], cap: float
) -> None:
    async with (
        node(router_cls, pubsub_cls) as (ha, pa, ra),
        node(router_cls, pubsub_cls) as (hb, pb, rb),
        node(router_cls, pubsub_cls) as (hc, pc, _),
    ):
        await dial(ha, hb)
        await dial(hc, hb)
        await pa.subscribe(TOPIC)
        await pb.subscribe(TOPIC)
        sub_c = await pc.subscribe(TOPIC)
        with trio.fail_after(10):
            while ha.get_id() not in rb.mesh.get(TOPIC, ()):
                await trio.sleep(0.05)
        await pa.unsubscribe(TOPIC)
        await trio.sleep(1.0)
        rejoined = time.monotonic()
        sub_a = await pa.subscribe(TOPIC)
        to_c = await first_arrival(pa, sub_c, b"a->c ", cap)
        to_a = await first_arrival(pc, sub_a, b"c->a ", cap)
        mesh = None
        with trio.move_on_after(max(0.0, cap - (time.monotonic() - rejoined))):
            while not (
                hb.get_id() in ra.mesh.get(TOPIC, ()) and ha.get_id() in rb.mesh.get(TOPIC, ())
            ):
                await trio.sleep(0.1)
            mesh = time.monotonic() - rejoined

    def fmt(value: float | None) -> str:
        return f"{value:6.2f} s" if value is not None else f"> {cap:.0f} s (cut off)"

    print(f"{label:28} A→C {fmt(to_c):>20}   C→A {fmt(to_a):>20}   mesh again {fmt(mesh):>20}")


async def main(cap: float) -> None:
    quiet_library_logging()
    print("rejoin 1 s after leaving, line A-B-C; time from the rejoin:")
    await run("bare py-libp2p 0.8.1", GossipSub, Pubsub, cap)
    await run("Peerdesk", compat.GoLikeGossipSub, compat.GuardedPubsub, cap)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cap", type=float, default=90.0)
    trio.run(main, parser.parse_args().cap)
