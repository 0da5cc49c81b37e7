"""NAT-PMP (RFC 6886) port mapping: the fallback for routers that speak it but not UPnP.

A few fixed-size UDP messages to the default gateway's port 5351, sent from a trio socket,
each answer awaited a bounded time (250 ms, doubled, 3 tries: RFC 6886 allows 9, which is
over a minute of waiting for a gateway that is not there). Answers are believed only from
the gateway's address and port, with the right length, version, opcode and result 0. The
default gateway is read from ``/proc/net/route`` (Linux); elsewhere NAT-PMP is not tried.
"""

from __future__ import annotations

import logging
import socket
import struct
from pathlib import Path

import trio

log = logging.getLogger(__name__)

PORT = 5351
TRIES = 3
FIRST_WAIT = 0.25
_OP_EXTERNAL, _OP_MAP_TCP = 0, 2


def default_gateway(route_table: Path = Path("/proc/net/route")) -> str | None:
    """The IPv4 default gateway, or None (no route, or not Linux)."""
    try:
        lines = route_table.read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[1] == "00000000" and int(fields[3], 16) & 2:
            try:
                return socket.inet_ntoa(struct.pack("<L", int(fields[2], 16)))
            except (ValueError, struct.error):
                return None
    return None


class NatPmpGateway:
    """The LAN's NAT-PMP gateway at ``ip``."""

    def __init__(self, ip: str, port: int = PORT) -> None:
        self.ip = ip
        self.port = port

    async def _ask(self, request: bytes, op: int, size: int) -> bytes | None:
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.connect((self.ip, self.port))  # the kernel drops datagrams from elsewhere
            wait = FIRST_WAIT
            for _ in range(TRIES):
                await sock.send(request)
                with trio.move_on_after(wait):
                    while True:
                        try:
                            answer = await sock.recv(64)
                        except OSError:  # ICMP port unreachable: no NAT-PMP there
                            return None
                        if len(answer) == size and answer[0] == 0 and answer[1] == 128 + op:
                            return answer if answer[2:4] == b"\0\0" else None
                wait *= 2
        return None

    async def external_ip(self) -> str | None:
        answer = await self._ask(struct.pack("!BB", 0, _OP_EXTERNAL), _OP_EXTERNAL, 12)
        return socket.inet_ntoa(answer[8:12]) if answer else None

    async def add(self, external_port: int, internal_port: int, lease: int) -> int | None:
        """Ask for the mapping; the gateway may grant another external port (returned)."""
        request = struct.pack("!BBHHHI", 0, _OP_MAP_TCP, 0, internal_port, external_port, lease)
        answer = await self._ask(request, _OP_MAP_TCP, 16)
        if answer is None:
            return None
        granted_internal: int
        granted_external: int
        lifetime: int
        granted_internal, granted_external, lifetime = struct.unpack("!HHI", answer[8:16])
        if granted_internal != internal_port or not granted_external or not lifetime:
            return None
        return granted_external

    async def remove(self, internal_port: int) -> None:
        request = struct.pack("!BBHHHI", 0, _OP_MAP_TCP, 0, internal_port, 0, 0)
        await self._ask(request, _OP_MAP_TCP, 16)
