"""One Peerdesk peer in a lab namespace, driven by JSON lines (tests/netlab.py).

Requests ``{"id": N, "op": ..., ...}`` on stdin get ``{"id": N, "result": ...}`` or
``{"id": N, "error": ...}``; core events come out as ``{"event": <class name>, ...}``.
The first line (id 0) is the peer's ``info()`` once it runs. EOF on stdin stops the peer.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from typing import Any

import trio

from core.libp2p_compat import quiet_library_logging
from core.network.direct import DirectConfig
from core.peer import Peer, PeerConfig, new_peer
from core.profile.settings import Settings


def _write(msg: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(msg, default=str) + "\n")
    sys.stdout.flush()


def _emit(event: Any) -> None:
    _write({"event": type(event).__name__, **dataclasses.asdict(event)})


async def _handle(peer: Peer, req: dict[str, Any]) -> Any:
    op = req["op"]
    if op == "info":
        return peer.info()
    if op == "connect":
        return await peer.connect(req["addr"])
    if op == "start":
        return peer.start_protocol(req["protocol"])
    if op == "send":
        return await peer.send(req["peer"], req["protocol"], req["data"])
    if op == "send_many":
        msgs = [peer.enqueue(req["peer"], req["protocol"], d) for d in req["data"]]
        for msg in msgs:
            await msg.wait()
        return [m.delivered for m in msgs]
    if op == "subscribe":
        return await peer.subscribe(req["topic"])
    if op == "publish":
        return await peer.publish(req["topic"], req["data"])
    if op == "topic_peers":
        return peer.list_peers(req["topic"])
    raise ValueError(f"unknown op {op}")


async def _serve(peer: Peer, nursery: trio.Nursery) -> None:
    stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
    buffer = b""

    async def answer(req: dict[str, Any]) -> None:
        try:
            _write({"id": req.get("id"), "result": await _handle(peer, req)})
        except Exception as exc:
            _write({"id": req.get("id"), "error": f"{type(exc).__name__}: {exc}"})

    while True:
        chunk = await stdin.receive_some()
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            nursery.start_soon(answer, json.loads(line))


async def main(args: argparse.Namespace) -> None:
    config = PeerConfig(
        listen_addrs=Settings().effective_listen_addrs(),  # TCP and QUIC, as a desktop peer
        bootstrap=args.bootstrap,
        relays=args.relay,
        relay_service=args.relay_service,
        port_mapping=args.port_mapping,
        direct=DirectConfig(backoff=(0.5, 1.0), probe_interval=0.5),
        dht_ready_wait=5.0,
    )
    peer = new_peer(config, _emit)
    async with trio.open_nursery() as nursery:
        await nursery.start(peer.run)
        _write({"id": 0, "result": peer.info()})
        await _serve(peer, nursery)
        peer.stop()
        await peer.stopped.wait()
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    quiet_library_logging()
    if os.environ.get("NETLAB_DEBUG"):  # the lab's peers log to stderr, which the lab shows
        logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
        logging.getLogger("core").setLevel(logging.DEBUG)
        logging.getLogger("libp2p").propagate = True  # the library turns it off
        for name in os.environ["NETLAB_DEBUG"].split(","):
            logging.getLogger(name).setLevel(logging.DEBUG)
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", action="append", default=[])
    parser.add_argument("--relay", action="append", default=[])
    parser.add_argument("--relay-service", action="store_true")
    parser.add_argument("--port-mapping", action="store_true")
    trio.run(main, parser.parse_args())
