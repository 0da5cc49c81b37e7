"""A bare py-libp2p 0.8.1 peer for bench_nat.py's baseline: the library's own relay client and
DCUtR with their defaults, none of Peerdesk's workarounds (it listens on its concrete LAN
address, since the library would advertise 0.0.0.0 and bind its hole punch to it).

    python benchmarks/nat_bare_peer.py <listen ip> <relay multiaddr>

Prints {"peerid", "circuit", "reserved": seconds from listening} once reserved on the
relay. A line on stdin with a peer's circuit address dials it; then {"relayed": seconds}
and {"direct": seconds} (or {"direct": null} after 30 s). EOF on stdin ends it.

    python benchmarks/nat_bare_peer.py connect <listen ip> <rounds> <multiaddr>...

Times ``host.connect`` to each multiaddr from ``rounds`` fresh hosts as the library makes
them (``new_host()``; ``enable_quic=True`` for a QUIC address) and prints
{"<multiaddr>": [seconds, ...], ...}.
"""

from __future__ import annotations

import json
import sys
import time

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.relay.circuit_v2.config import RelayConfig
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.tools.anyio_service import background_trio_service


def _say(msg: dict[str, object]) -> None:
    print(json.dumps(msg), flush=True)


async def main(ip: str, relay_text: str) -> None:
    host = new_host(key_pair=create_new_key_pair())
    relay = info_from_p2p_addr(multiaddr.Multiaddr(relay_text))
    protocol = CircuitV2Protocol(host, allow_hop=False)
    transport = CircuitV2Transport(host, protocol, RelayConfig())
    async with (
        host.run([multiaddr.Multiaddr(f"/ip4/{ip}/tcp/0")]),
        background_trio_service(protocol),
        background_trio_service(DCUtRProtocol(host)),
        trio.open_nursery() as nursery,
    ):
        start = time.perf_counter()
        await host.connect(relay)
        stream = await host.new_stream(relay.peer_id, [HOP])
        assert await transport.reserve(stream, relay.peer_id, nursery)
        reserved = time.perf_counter() - start
        _say({"peerid": str(host.get_id()), "circuit": f"{relay_text}/p2p-circuit",
              "reserved": reserved})  # fmt: skip
        stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
        buffer = b""
        while True:
            chunk = await stdin.receive_some()
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                await _dial(host, transport, line.decode().strip())
        nursery.cancel_scope.cancel()


async def _dial(host: object, transport: CircuitV2Transport, circuit: str) -> None:
    target = info_from_p2p_addr(multiaddr.Multiaddr(circuit)).peer_id
    start = time.perf_counter()
    await transport.dial(multiaddr.Multiaddr(circuit))
    _say({"relayed": time.perf_counter() - start})
    with trio.move_on_after(30):
        while True:
            conns = host.get_network().get_connections(target)  # type: ignore[attr-defined]
            addrs = [str(a) for c in conns for a in c.get_transport_addresses()]
            if any("p2p-circuit" not in a for a in addrs):
                _say({"direct": time.perf_counter() - start})
                return
            await trio.sleep(0.05)
    _say({"direct": None})


async def connect_times(ip: str, rounds: int, targets: list[str]) -> None:
    times: dict[str, list[float]] = {}
    for target in targets:
        quic = "/quic-v1" in target
        listen = f"/ip4/{ip}/udp/0/quic-v1" if quic else f"/ip4/{ip}/tcp/0"
        info = info_from_p2p_addr(multiaddr.Multiaddr(target))
        for _ in range(rounds):
            host = new_host(key_pair=create_new_key_pair(), enable_quic=quic)
            async with host.run([multiaddr.Multiaddr(listen)]):
                start = time.perf_counter()
                with trio.fail_after(30):
                    await host.connect(info)
                times.setdefault(target, []).append(time.perf_counter() - start)
    _say(times)  # type: ignore[arg-type]


if __name__ == "__main__":
    if sys.argv[1] == "connect":
        trio.run(connect_times, sys.argv[2], int(sys.argv[3]), sys.argv[4:])
    else:
        trio.run(main, sys.argv[1], sys.argv[2])
