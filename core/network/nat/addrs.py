"""The addresses this peer advertises (identify, the DHT, mDNS).

Listening on ``/ip4/0.0.0.0/tcp/PORT`` (or ``/udp/PORT/quic-v1``) makes py-libp2p advertise
``/ip4/0.0.0.0/...`` itself: a peer that dials it lands on its own listener. We advertise
instead every concrete interface address with that port and the observed (public) addresses
the library confirmed — never an unspecified one. Our relay (``/p2p-circuit``) addresses are
added after this, by ``libp2p_compat.advertise_circuits``.
"""

from __future__ import annotations

import ipaddress
import logging
import time

import ifaddr
import multiaddr

log = logging.getLogger(__name__)

UNSPECIFIED = {"0.0.0.0", "::"}


_IPS_MAX_AGE = 1.0
_ips_cache: tuple[float, tuple[list[str], list[str]]] | None = None


def interface_ips() -> tuple[list[str], list[str]]:
    """IPv4 and IPv6 addresses of this machine's interfaces (IPv6 link-local left out: it
    needs a zone to be dialled). Listed at most once a second: py-libp2p asks the host for
    its addresses on every pubsub RPC (its signed peer record), and a listing costs ~2 ms."""
    global _ips_cache
    now = time.monotonic()
    if _ips_cache is None or now - _ips_cache[0] >= _IPS_MAX_AGE:
        _ips_cache = now, _list_interface_ips()
    v4, v6 = _ips_cache[1]
    return list(v4), list(v6)


def _list_interface_ips() -> tuple[list[str], list[str]]:
    v4: list[str] = []
    v6: list[str] = []
    try:
        adapters = ifaddr.get_adapters()
    except Exception as exc:
        log.warning("cannot list network interfaces: %s", exc)
        return ["127.0.0.1"], []
    for adapter in adapters:
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                v4.append(ip.ip)
            elif not ipaddress.IPv6Address(ip.ip[0]).is_link_local:
                v6.append(ip.ip[0])
    return list(dict.fromkeys(v4)), list(dict.fromkeys(v6))


def expand_unspecified(
    addrs: list[multiaddr.Multiaddr], ips: tuple[list[str], list[str]] | None = None
) -> list[multiaddr.Multiaddr]:
    """Each ``/ip4/0.0.0.0/...`` (``/ip6/::/...``) becomes one address per interface."""
    v4, v6 = ips if ips is not None else interface_ips()
    out: list[multiaddr.Multiaddr] = []
    for addr in addrs:
        parts = str(addr).split("/")
        if len(parts) > 2 and parts[1] in ("ip4", "ip6") and parts[2] in UNSPECIFIED:
            for ip in v4 if parts[1] == "ip4" else v6:
                out.append(multiaddr.Multiaddr("/".join([*parts[:2], ip, *parts[3:]])))
        else:
            out.append(addr)
    return out


def is_private_or_loopback(addr: multiaddr.Multiaddr) -> bool:
    parts = str(addr).split("/")
    if len(parts) < 3 or parts[1] not in ("ip4", "ip6"):
        return False
    try:
        ip = ipaddress.ip_address(parts[2])
    except ValueError:
        return False
    # 198.18.0.0/15 (benchmarking) counts as public: the NAT lab's "internet" is there.
    return ip.is_loopback or ip.is_link_local or (ip.is_private and ip not in _BENCHMARK)


def _is_loopback(addr: multiaddr.Multiaddr) -> bool:
    return str(addr).startswith(("/ip4/127.", "/ip6/::1/"))


_BENCHMARK = ipaddress.ip_network("198.18.0.0/15")


class AddressPolicy:
    """The host's ``addrs_factory``: candidates in, advertised addresses out."""

    def __call__(self, candidates: list[multiaddr.Multiaddr]) -> list[multiaddr.Multiaddr]:
        """Loopback last: DCUtR binds its hole-punch dials to the first address we advertise,
        and a socket bound to 127.0.0.1 cannot reach the other peer. QUIC after TCP of the
        same kind: peers that dial the first address they are given get the faster one
        (``libp2p_compat/quic.py``)."""
        unique = list({str(a): a for a in expand_unspecified(list(candidates))}.values())
        return sorted(unique, key=lambda a: (_is_loopback(a), "/quic" in str(a)))
