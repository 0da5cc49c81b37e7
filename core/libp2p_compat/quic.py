"""QUIC (``/udp/P/quic-v1``) beside TCP, for peers that can be reached directly.

py-libp2p 0.8.1's ``QUICTransport`` (aioquic underneath, libp2p TLS as QUIC's handshake,
native streams instead of Yamux) connects and carries streams. Passing an explicit transport
list to ``new_host`` keeps TCP as well: with ``enable_quic=True`` the library *replaces* the
TCP transport by QUIC when no QUIC listen address is given at construction
(``libp2p/__init__.py`` ``_build_transports_for_swarm``), and our host is built before it
listens. Hole punching over QUIC is out of reach on this release (nat-notes trap 5).

Two library behaviours are corrected here, by the transport itself (``PeerdeskQuic``):

- **A UDP port that cannot be had must not stop the peer.** The QUIC listener raises
  ``QUICListenError`` when its bind fails, which the swarm's ``listen`` does not catch (it
  catches ``OSError``): the whole host failed to start, TCP included. Worse, the listener
  binds with ``SO_REUSEPORT``, so on Linux a port another process (another Peerdesk on the
  same account) holds with that option is *shared*, and the kernel splits incoming datagrams
  between the two: QUIC breaks for both. Before listening we therefore try the port with a
  plain socket; taken, QUIC listens on another UDP port (TCP keeps its own), and any bind
  failure reaches the swarm as ``OSError``, so the peer runs on TCP alone.
- **TCP is preferred when a peer offers both.** The swarm ranks QUIC first and starts TCP
  250 ms later (go-libp2p's order). Here QUIC connects no faster, moves direct messages at
  0.3x-1.1x TCP's rate and bulk data at a quarter to a tenth of it (benchmarks/bench_nat.py
  prints all three), and a file-sharing peer lives on bulk transfers: the swarm's QUIC dial
  gives way at once while TCP is tried, and QUIC is dialled only when TCP fails or has not
  connected within ``QUIC_FALLBACK_DELAY`` (a firewall that drops TCP). A peer offering only
  QUIC is dialled over QUIC as before.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import multiaddr
import trio
from libp2p.abc import INetConn
from libp2p.crypto.keys import KeyPair
from libp2p.network.exceptions import SwarmException
from libp2p.peer.id import ID
from libp2p.transport.quic.config import QUICTransportConfig
from libp2p.transport.quic.exceptions import QUICListenError
from libp2p.transport.quic.transport import QUICTransport

log = logging.getLogger(__name__)

QUIC_FALLBACK_DELAY = 5.0
"""How long TCP has to connect before QUIC is dialled beside it. Generous: a TCP connection
takes 3-4 round trips with Noise and Yamux, and on a loaded machine its handshake can take
seconds. With 1 s the swarm lab (tests/test_swarm.py, 12 processes on 2 cores) failed: its
members were connected but some had no pubsub stream to each other, so member lists never
converged; with 5 s it passes. Two connections to one peer (TCP finishing after QUIC
started) are the likely cause, not reproduced alone on loopback. A refused TCP dial starts
QUIC at once."""

__all__ = [
    "QUIC_FALLBACK_DELAY",
    "PeerdeskQuic",
    "is_quic",
    "prefer_tcp",
    "quic_transport",
    "udp_port_free",
]


IDLE_TIMEOUT = 30.0
"""go-libp2p's (quic-go's default; our ping loop keeps live connections busy every 15 s). The
library's 600 s kept a SIGKILLed peer's connection ten minutes (tests/test_swarm.py churn)."""


def quic_transport(key_pair: KeyPair) -> PeerdeskQuic:
    config = QUICTransportConfig(idle_timeout=IDLE_TIMEOUT)
    return PeerdeskQuic(key_pair.private_key, config)


def is_quic(addr: multiaddr.Multiaddr) -> bool:
    text = str(addr)
    return "/quic-v1" in text or text.endswith("/quic") or "/quic/" in text


def _is_tcp(addr: multiaddr.Multiaddr) -> bool:
    text = str(addr)
    return "/tcp/" in text and "/p2p-circuit" not in text and "/ws" not in text


def udp_port_free(host: str, port: int) -> bool:
    """Whether nobody holds ``host:port`` over UDP. A plain socket (no reuse options) fails
    on a port held by a ``SO_REUSEPORT`` socket too, which the listener's own would share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _with_port(addr: multiaddr.Multiaddr, port: int) -> multiaddr.Multiaddr:
    parts = str(addr).split("/")
    parts[parts.index("udp") + 1] = str(port)
    return multiaddr.Multiaddr("/".join(parts))


class PeerdeskQuic(QUICTransport):
    """The library's QUIC transport with the two corrections of the module doc."""

    def create_listener(self, handler_function: Any) -> Any:
        listener = super().create_listener(handler_function)
        listen: Callable[[multiaddr.Multiaddr], Awaitable[None]] = listener.listen

        async def listen_or_give_way(maddr: multiaddr.Multiaddr) -> None:
            ip, port = maddr.value_for_protocol("ip4") or "", 0
            try:
                port = int(maddr.value_for_protocol("udp"))
            except Exception:
                pass
            if port and ip and not udp_port_free(ip, port):
                log.warning("UDP port %d is taken: QUIC listens on another port", port)
                maddr = _with_port(maddr, 0)
            try:
                await listen(maddr)
            except QUICListenError as exc:
                log.warning("QUIC cannot listen on %s (%s): TCP only", maddr, exc)
                raise OSError(f"QUIC cannot listen on {maddr}: {exc}") from exc

        listener.listen = listen_or_give_way  # type: ignore[method-assign]
        return listener

    def set_swarm(self, swarm: Any) -> None:
        super().set_swarm(swarm)
        prefer_tcp(swarm)


def prefer_tcp(swarm: Any) -> None:
    """See the module doc: TCP first for a peer that offers TCP and QUIC, QUIC as fallback.

    Which peers are being dialled TCP-first is kept per swarm (not in a context variable:
    tasks a dial spawns, e.g. a new connection's stream handlers, would inherit it)."""
    if getattr(swarm, "_peerdesk_prefers_tcp", False):
        return
    swarm._peerdesk_prefers_tcp = True
    dial_with_retry = swarm._dial_with_retry
    dial_peer: Callable[[ID], Awaitable[list[INetConn]]] = swarm.dial_peer
    tcp_first: dict[ID, int] = {}

    def known(peer_id: ID) -> list[multiaddr.Multiaddr]:
        try:
            return list(swarm.peerstore.addrs(peer_id))
        except Exception:
            return []

    def offers_both(peer_id: ID) -> bool:
        addrs = known(peer_id)
        return any(is_quic(a) for a in addrs) and any(_is_tcp(a) for a in addrs)

    async def dial_with_retry_tcp_first(addr: multiaddr.Multiaddr, peer_id: ID, *args: Any) -> Any:
        if peer_id in tcp_first and is_quic(addr) and offers_both(peer_id):
            raise SwarmException("QUIC gives way to TCP")  # the swarm then starts TCP at once
        return await dial_with_retry(addr, peer_id, *args)

    async def dial_peer_tcp_first(peer_id: ID) -> list[INetConn]:
        if swarm.get_connections(peer_id):
            return await dial_peer(peer_id)
        result: list[INetConn] = []
        failure: list[BaseException] = []
        quic_errors: list[str] = []
        tcp_failed = trio.Event()

        async with trio.open_nursery() as nursery:

            async def by_tcp() -> None:
                tcp_first[peer_id] = tcp_first.get(peer_id, 0) + 1
                try:
                    conns = await dial_peer(peer_id)  # may look the peer up in the DHT first
                except Exception as exc:  # raised as it is below, not in an exception group
                    failure.append(exc)
                    tcp_failed.set()
                    return
                finally:
                    tcp_first[peer_id] -= 1
                    if not tcp_first[peer_id]:
                        del tcp_first[peer_id]
                result.extend(conns)
                nursery.cancel_scope.cancel()

            async def by_quic() -> None:
                with trio.move_on_after(QUIC_FALLBACK_DELAY):
                    await tcp_failed.wait()
                if not offers_both(peer_id):
                    return  # QUIC only (or nothing): the swarm's own dial covered it
                quic = sorted(
                    (a for a in known(peer_id) if is_quic(a)),
                    key=lambda a: str(a).startswith(("/ip4/127.", "/ip6/::1/")),
                )
                for addr in quic:
                    try:
                        conn = await dial_with_retry(addr, peer_id)
                    except Exception as exc:
                        quic_errors.append(f"{addr}: {exc}")
                        continue
                    result.append(conn)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(by_tcp)
            nursery.start_soon(by_quic)
        if result:
            swarm.unblock_peer(peer_id)  # a failed TCP try left the peer in the negative cache
            return result
        if failure and not quic_errors:
            raise failure[0]
        raise SwarmException(f"unable to connect to {peer_id}: {failure + quic_errors}")

    swarm._dial_with_retry = dial_with_retry_tcp_first
    swarm.dial_peer = dial_peer_tcp_first
