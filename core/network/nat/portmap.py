"""Port mapping on the home router (UPnP IGD, else NAT-PMP), like go-libp2p's ``NATPortMap``.

A router that speaks UPnP forwards our TCP listen port, and our QUIC (UDP) one, from its
public address to us; the mapped addresses (``/ip4/<router's external IP>/tcp/<port>``,
``/ip4/<…>/udp/<port>/quic-v1``) are then advertised (identify, the DHT) and so claimed to
AutoNAT, whose servers dial the TCP one back on a new connection: only their confirmation
makes us ``public``. The library's own UPnP (nat-notes trap 6) blocks start-up for seconds,
maps TCP only and never advertises the mapping, so Peerdesk does its own.

The UPnP client is ``miniupnpc`` (the MiniUPnP project's, already a py-libp2p dependency).
Its calls block, so each runs in a worker thread under a bound; a LAN without a UPnP gateway
gets a NAT-PMP try (``natpmp.py``, async, bounded too; its default gateway found on
Linux, macOS and Windows): start-up never waits for a
gateway, and a gateway that stops answering costs one bounded call. What the gateway says is
checked before use (an external IP that is private, loopback or not IPv4 is refused: behind
a second NAT a mapping reaches nobody). Mappings are leased, renewed at half the lease, and
removed on exit (within a bound: a gone router must not hold up shutdown).
"""

from __future__ import annotations

import ipaddress
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import multiaddr
import trio
from libp2p.abc import IHost

from core.network.nat.natpmp import NatPmpGateway, default_gateway

log = logging.getLogger(__name__)

DISCOVER_MS = 2000
"""How long SSDP discovery listens for gateways' answers."""
CALL_TIMEOUT = 10.0
"""Bound on one call to the gateway (discovery included), in its worker thread."""
LEASE = 3600
"""Seconds a mapping is asked for; renewed at half of it."""
RETRY = 300.0
"""No gateway (or it refused): look again after this long."""
REMOVE_TIMEOUT = 3.0
ATTEMPTS = 3
"""External ports tried: our own first (a port-preserving mapping), then random ones."""

_NOT_PUBLIC = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                  "100.64.0.0/10", "169.254.0.0/16")]  # fmt: skip
"""External IPs that mean a NAT behind a NAT. 198.18.0.0/15 stays usable: the lab's
"internet" is there."""


def usable_external_ip(text: object) -> str | None:
    """The gateway's external IP if it can be dialled from the internet, else None."""
    if not isinstance(text, str) or len(text) > 15:
        return None
    try:
        ip = ipaddress.IPv4Address(text.strip())
    except ValueError:
        return None
    if ip.is_loopback or ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return None
    if any(ip in net for net in _NOT_PUBLIC):
        return None
    return str(ip)


@dataclass(frozen=True)
class Mapping:
    external_ip: str
    external_port: int
    internal_port: int
    protocol: str = "tcp"
    """``tcp``, or ``udp`` for QUIC."""

    @property
    def addr(self) -> multiaddr.Multiaddr:
        where = f"/ip4/{self.external_ip}/{self.protocol}/{self.external_port}"
        return multiaddr.Multiaddr(where + ("/quic-v1" if self.protocol == "udp" else ""))


class UpnpClient:
    """One UPnP IGD found on the LAN; every method blocks (``UpnpGateway`` calls it from a
    worker thread)."""

    def __init__(self, upnp: Any) -> None:
        self._upnp = upnp
        self.lan_ip: str = str(upnp.lanaddr)
        ipaddress.IPv4Address(self.lan_ip)  # a gateway that gives no usable LAN IP is no use

    @classmethod
    def discover(cls) -> UpnpClient | None:
        import miniupnpc  # C extension, imported where it is used

        upnp = miniupnpc.UPnP()
        upnp.discoverdelay = DISCOVER_MS
        try:
            if upnp.discover() <= 0:
                return None
            upnp.selectigd()
            return cls(upnp)
        except Exception as exc:  # miniupnpc raises bare Exception for "no IGD"
            log.debug("no UPnP gateway: %s", exc)
            return None

    def external_ip(self) -> object:
        return self._upnp.externalipaddress()

    def add(self, protocol: str, external_port: int, internal_port: int) -> bool:
        """Ask for the mapping; a gateway that only knows permanent leases gets one."""
        args = (external_port, protocol.upper(), self.lan_ip, internal_port, "peerdesk", "")
        try:
            return bool(self._upnp.addportmapping(*args, LEASE))
        except Exception as exc:
            if "725" not in str(exc) and "Permanent" not in str(exc):
                raise
        return bool(self._upnp.addportmapping(*args, 0))

    def remove(self, protocol: str, external_port: int) -> None:
        self._upnp.deleteportmapping(external_port, protocol.upper())


async def _in_thread(fn: Callable[[], Any], timeout: float = CALL_TIMEOUT) -> Any:
    """``fn()`` in a worker thread, given up (and the thread abandoned) after ``timeout``."""
    with trio.fail_after(timeout):
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


class Gateway(Protocol):
    """What port mapping needs of a router, whichever protocol it speaks."""

    async def external_ip(self) -> object: ...

    async def add(
        self, protocol: str, external_port: int, internal_port: int, lease: int
    ) -> int | None:
        """The external port granted (``protocol``: tcp or udp), or None."""

    async def remove(self, protocol: str, external_port: int, internal_port: int) -> None: ...


class UpnpGateway:
    def __init__(self, client: UpnpClient) -> None:
        self.client = client

    async def external_ip(self) -> object:
        return await _in_thread(self.client.external_ip)

    async def add(
        self, protocol: str, external_port: int, internal_port: int, lease: int
    ) -> int | None:
        done = await _in_thread(partial(self.client.add, protocol, external_port, internal_port))
        return external_port if done else None

    async def remove(self, protocol: str, external_port: int, internal_port: int) -> None:
        await _in_thread(partial(self.client.remove, protocol, external_port))


class BoundedNatPmp:
    """NAT-PMP with the same overall bound per call as UPnP."""

    def __init__(self, gateway: NatPmpGateway) -> None:
        self.gateway = gateway

    async def external_ip(self) -> object:
        with trio.fail_after(CALL_TIMEOUT):
            return await self.gateway.external_ip()

    async def add(
        self, protocol: str, external_port: int, internal_port: int, lease: int
    ) -> int | None:
        with trio.fail_after(CALL_TIMEOUT):
            return await self.gateway.add(external_port, internal_port, lease, protocol)

    async def remove(self, protocol: str, external_port: int, internal_port: int) -> None:
        with trio.fail_after(CALL_TIMEOUT):
            await self.gateway.remove(internal_port, protocol)


async def find_gateway() -> Gateway | None:
    """The LAN's UPnP IGD, else its default gateway if that answers NAT-PMP, else None."""
    client = await _in_thread(UpnpClient.discover)
    if client is not None:
        return UpnpGateway(client)
    router = await _in_thread(default_gateway)  # runs a routing tool off Linux
    if router is not None:
        natpmp = BoundedNatPmp(NatPmpGateway(router))
        if await natpmp.external_ip() is not None:
            return natpmp
    return None


def listen_ports(host: IHost) -> list[tuple[str, int]]:
    """``(protocol, port)`` we listen on beyond loopback: TCP, and UDP for QUIC (a
    loopback-only peer has nothing to map)."""
    ports: list[tuple[str, int]] = []
    for addr in host.get_transport_addrs():
        parts = str(addr).split("/")
        if len(parts) > 4 and parts[1] == "ip4" and parts[3] in ("tcp", "udp"):
            if parts[3] == "udp" and "quic-v1" not in parts:
                continue
            if not parts[2].startswith("127.") and parts[4].isdigit():
                ports.append((parts[3], int(parts[4])))
    return list(dict.fromkeys(ports))


class PortMapping:
    """Keeps our TCP and QUIC listen ports mapped on the LAN's gateway while enabled."""

    def __init__(self, host: IHost, *, enabled: bool, on_change: Callable[[], None]) -> None:
        self.host = host
        self.enabled = enabled
        self.on_change = on_change
        self.mappings: dict[tuple[str, int], Mapping] = {}
        """(protocol, internal port) -> its mapping on the gateway."""

    def addrs(self) -> list[multiaddr.Multiaddr]:
        return [m.addr for m in self.mappings.values()]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()  # never part of start-up: discovery happens after
        if not self.enabled or not listen_ports(self.host):
            return
        gateway: Gateway | None = None
        try:
            while True:
                wait = RETRY
                try:
                    if gateway is None:
                        gateway = await find_gateway()
                    if gateway is not None:
                        await self._refresh(gateway)
                        wait = LEASE / 2 if self.mappings else RETRY
                except Exception as exc:  # a gateway gone mute or talking nonsense
                    log.info("port mapping failed: %s", exc)
                    gateway = None
                    self._set({})
                await trio.sleep(wait)
        finally:
            if gateway is not None and self.mappings:
                with trio.CancelScope(shield=True):
                    await self._remove_all(gateway)

    async def _refresh(self, gateway: Gateway) -> None:
        external_ip = usable_external_ip(await gateway.external_ip())
        if external_ip is None:
            log.info("the gateway has no public external address: not mapping")
            self._set({})
            return
        mapped: dict[tuple[str, int], Mapping] = {}
        for key in listen_ports(self.host):
            protocol, port = key
            old = self.mappings.get(key)
            tries = [old.external_port] if old else []
            tries += [port] + [random.randint(1024, 65535) for _ in range(ATTEMPTS - 1)]
            for external in dict.fromkeys(tries):
                try:
                    granted = await gateway.add(protocol, external, port, LEASE)
                except trio.TooSlowError:
                    raise
                except Exception as exc:  # e.g. 718 ConflictInMappingEntry: try another
                    log.debug("mapping %s %d -> %d refused: %s", protocol, external, port, exc)
                    continue
                if granted:
                    mapped[key] = Mapping(external_ip, granted, port, protocol)
                    break
        self._set(mapped)

    def _set(self, mapped: dict[tuple[str, int], Mapping]) -> None:
        if mapped != self.mappings:
            self.mappings = mapped
            log.info("port mapping: %s", [str(a) for a in self.addrs()] or "none")
            self.on_change()

    async def _remove_all(self, gateway: Gateway) -> None:
        with trio.move_on_after(REMOVE_TIMEOUT):
            for mapping in list(self.mappings.values()):
                try:
                    await gateway.remove(
                        mapping.protocol, mapping.external_port, mapping.internal_port
                    )
                except Exception as exc:
                    log.debug("removing port mapping %s failed: %s", mapping, exc)
        self.mappings = {}
