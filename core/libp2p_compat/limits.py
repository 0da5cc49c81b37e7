"""Inbound connections: handshakes in progress cannot lock honest peers out.

py-libp2p 0.8.1 takes a token of the swarm's inbound limiter (``max_connections -
min_connections`` tokens, 500 for us) when a TCP connection is accepted and holds it through the
security and muxer handshake (bounded only by ``inbound_upgrade_timeout``, 10 s). 500 stalled
handshakes, renewed every 10 s, held every token: 7 of 8 honest dials failed meanwhile.

Here the handshake phase (``Swarm.upgrade_inbound_raw_conn``) has a gate of its own: at most
``PENDING_PER_IP`` handshakes from one address and ``PENDING`` in all. A connection past either
is closed at once, so stalled handshakes hold at most ``PENDING`` of the limiter's tokens and
completed connections always find room; one address cannot take the whole gate either.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from libp2p.abc import IMuxedConn, IRawConnection
from libp2p.network.exceptions import SwarmException
from libp2p.network.swarm import Swarm
from multiaddr import Multiaddr

log = logging.getLogger(__name__)

PENDING = 64
PENDING_PER_IP = 8


class HandshakeGate:
    """Handshakes in progress on one swarm, by remote address."""

    def __init__(self, total: int = PENDING, per_ip: int = PENDING_PER_IP) -> None:
        self.total = total
        self.per_ip = per_ip
        self.pending: Counter[str] = Counter()

    def enter(self, ip: str) -> bool:
        if sum(self.pending.values()) >= self.total or self.pending[ip] >= self.per_ip:
            return False
        self.pending[ip] += 1
        return True

    def leave(self, ip: str) -> None:
        self.pending[ip] -= 1
        if self.pending[ip] <= 0:
            del self.pending[ip]


def handshake_gate(swarm: Swarm) -> HandshakeGate:
    gate = getattr(swarm, "_peerdesk_handshake_gate", None)
    if gate is None:
        gate = HandshakeGate()
        swarm._peerdesk_handshake_gate = gate  # type: ignore[attr-defined]
    return gate


_original_upgrade = Swarm.upgrade_inbound_raw_conn


async def _gated_upgrade(self: Swarm, raw_conn: IRawConnection, maddr: Multiaddr) -> IMuxedConn:
    remote: Any = raw_conn.get_remote_address() if hasattr(raw_conn, "get_remote_address") else None
    ip = str(remote[0]) if remote else "?"
    gate = handshake_gate(self)
    if not gate.enter(ip):
        log.debug("inbound handshake from %s refused: too many in progress", ip)
        await raw_conn.close()
        raise SwarmException(f"too many inbound handshakes in progress (from {ip})")
    try:
        return await _original_upgrade(self, raw_conn, maddr)
    finally:
        gate.leave(ip)


def gate_inbound_handshakes() -> None:
    """Install the gate on every swarm of the process (idempotent)."""
    Swarm.upgrade_inbound_raw_conn = _gated_upgrade  # type: ignore[method-assign]


def inbound_handshakes_gated() -> bool:
    return Swarm.upgrade_inbound_raw_conn is _gated_upgrade
