"""compat.advertise_mapped: the router's mapped address reaches what the host advertises
(identify, the DHT, AutoNAT's claims), after our own; fails if the library's get_addrs or
the UPnP client's API changes under it."""

from __future__ import annotations

import inspect

import miniupnpc
import trio
from libp2p.host.basic_host import BasicHost

from core.network.nat.portmap import Mapping, listen_ports
from tests.conftest import peer_group


def test_the_apis_we_rely_on_are_still_there() -> None:
    assert "get_transport_addrs" in inspect.getsource(BasicHost.get_addrs)
    upnp = miniupnpc.UPnP()
    for name in ("discover", "selectigd", "externalipaddress", "addportmapping",
                 "deleteportmapping", "lanaddr", "discoverdelay"):  # fmt: skip
        assert hasattr(upnp, name), name


async def test_a_mapped_address_is_advertised_after_our_own_and_reaches_other_peers() -> None:
    async with peer_group(2) as [(a, _), (b, _)]:
        assert listen_ports(a.host) == []  # loopback only: nothing to map, no discovery
        before = [str(x) for x in a.host.get_addrs()]
        a.portmap.mappings = {
            ("tcp", 4001): Mapping("198.18.0.9", 4001, 4001),
            ("udp", 4001): Mapping("198.18.0.9", 4002, 4001, "udp"),
        }
        after = [str(x) for x in a.host.get_addrs()]
        assert after == [
            *before,
            f"/ip4/198.18.0.9/tcp/4001/p2p/{a.peer_id}",
            f"/ip4/198.18.0.9/udp/4002/quic-v1/p2p/{a.peer_id}",
        ]
        await b.connect(before[0])
        with trio.fail_after(15):  # b learns it through identify
            while not any(
                "/ip4/198.18.0.9/tcp/4001" in str(x)
                for x in b.host.get_peerstore().addrs(a.peer_id)
            ):
                await trio.sleep(0.1)


async def test_tcp_and_quic_listen_ports_are_both_to_be_mapped() -> None:
    from core.peer import PeerConfig
    from tests.conftest import fast_config

    def wildcard() -> PeerConfig:
        return fast_config(listen_addrs=["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"])

    async with peer_group(1, config=wildcard) as [(a, _)]:
        ports = listen_ports(a.host)
        assert sorted(proto for proto, _ in ports) == ["tcp", "udp"]
        for proto, port in ports:
            assert any(f"/{proto}/{port}" in str(x) for x in a.host.get_transport_addrs())
