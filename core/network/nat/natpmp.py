"""NAT-PMP (RFC 6886) port mapping: the fallback for routers that speak it but not UPnP.

A few fixed-size UDP messages to the default gateway's port 5351, sent from a trio socket,
each answer awaited a bounded time (250 ms, doubled, 3 tries: RFC 6886 allows 9, which is
over a minute of waiting for a gateway that is not there). Answers are believed only from
the gateway's address and port, with the right length, version, opcode and result 0.

The default gateway comes from ``/proc/net/route`` on Linux, ``route -n get default`` (then
``netstat -rn -f inet``) on macOS and ``route print -4 0.0.0.0`` on Windows: the tools every
such system has. The libraries that do this (``netifaces``, unmaintained since 2021, and its
C-extension forks) would be a compiled dependency for one lookup. Each command is bounded
(``COMMAND_TIMEOUT``) and its output believed only where it parses as an IPv4 address.
"""

from __future__ import annotations

import ipaddress
import logging
import platform
import socket
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import trio

log = logging.getLogger(__name__)

PORT = 5351
TRIES = 3
FIRST_WAIT = 0.25
COMMAND_TIMEOUT = 3.0
_OP_EXTERNAL = 0
_OP_MAP = {"udp": 1, "tcp": 2}

Run = Callable[[list[str]], str | None]


def run_command(argv: list[str]) -> str | None:
    """A routing tool's output, or None if it is missing, fails or takes too long."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return done.stdout if done.returncode == 0 else None


def default_gateway(
    route_table: Path = Path("/proc/net/route"),
    system: str | None = None,
    run: Run = run_command,
) -> str | None:
    """The IPv4 default gateway, or None (no default route, or no way to find it). Blocks
    for up to ``COMMAND_TIMEOUT`` twice off Linux: call it from a worker thread."""
    system = system or platform.system()
    if system == "Darwin":
        return macos_gateway(run(["route", "-n", "get", "default"])) or netstat_gateway(
            run(["netstat", "-rn", "-f", "inet"])
        )
    if system == "Windows":
        return windows_gateway(run(["route", "print", "-4", "0.0.0.0"]))
    return linux_gateway(route_table)


def _ipv4(text: str) -> str | None:
    try:
        ip = ipaddress.IPv4Address(text)
    except ValueError:
        return None
    return None if ip.is_unspecified or ip.is_loopback or ip.is_multicast else str(ip)


def macos_gateway(output: str | None) -> str | None:
    """From ``route -n get default``: its ``gateway:`` line (absent when there is no default
    route; a name or link# when it is not an IPv4 next hop)."""
    for line in (output or "").splitlines():
        key, _, value = line.strip().partition(":")
        if key == "gateway":
            return _ipv4(value.strip())
    return None


def netstat_gateway(output: str | None) -> str | None:
    """From BSD ``netstat -rn``: the first ``default`` row of the Internet (IPv4) table."""
    for line in (output or "").splitlines():
        if line.startswith("Internet6"):
            break
        fields = line.split()
        if len(fields) > 1 and fields[0] == "default":
            ip = _ipv4(fields[1])
            if ip is not None:
                return ip
    return None


def windows_gateway(output: str | None) -> str | None:
    """From ``route print``: among the active ``0.0.0.0 0.0.0.0`` rows, the gateway of the one
    with the lowest metric (``On-link`` rows have no gateway). Only the "Active Routes"
    table counts: persistent routes may be for an interface that is down."""
    best: tuple[int, str] | None = None
    active = False
    for line in (output or "").splitlines():
        if line.strip().startswith("Active Routes"):
            active = True
            continue
        if line.strip().startswith("Persistent Routes"):
            active = False
            continue
        fields = line.split()
        if not active or len(fields) < 5 or fields[:2] != ["0.0.0.0", "0.0.0.0"]:
            continue
        ip = _ipv4(fields[2])
        metric = int(fields[4]) if fields[4].isdigit() else 1 << 30
        if ip is not None and (best is None or metric < best[0]):
            best = (metric, ip)
    return best[1] if best else None


def linux_gateway(route_table: Path = Path("/proc/net/route")) -> str | None:
    """From the kernel's route table: the default route with the gateway flag."""
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

    async def add(
        self, external_port: int, internal_port: int, lease: int, protocol: str = "tcp"
    ) -> int | None:
        """Ask for the mapping (``protocol``: tcp or udp); the gateway may grant another
        external port (returned)."""
        op = _OP_MAP[protocol]
        request = struct.pack("!BBHHHI", 0, op, 0, internal_port, external_port, lease)
        answer = await self._ask(request, op, 16)
        if answer is None:
            return None
        granted_internal: int
        granted_external: int
        lifetime: int
        granted_internal, granted_external, lifetime = struct.unpack("!HHI", answer[8:16])
        if granted_internal != internal_port or not granted_external or not lifetime:
            return None
        return granted_external

    async def remove(self, internal_port: int, protocol: str = "tcp") -> None:
        op = _OP_MAP[protocol]
        request = struct.pack("!BBHHHI", 0, op, 0, internal_port, 0, 0)
        await self._ask(request, op, 16)
