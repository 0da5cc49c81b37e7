"""core/libp2p_compat/nat.py: markers that fail when py-libp2p changes under the workarounds,
and the workarounds at work between real hosts on loopback (relay, circuit dial, DCUtR)."""

from __future__ import annotations

import inspect

import multiaddr
import trio
from libp2p.host.basic_host import BasicHost
from libp2p.network.swarm import Swarm
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol, _local_tcp_listen_addrs
from libp2p.relay.circuit_v2.transport import CircuitV2Transport

from core.events import PeerData
from core.network.nat.addrs import AddressPolicy, expand_unspecified
from tests.conftest import fast_config, peer_group


def test_library_still_has_the_traps_we_work_round() -> None:
    # Trap 1: dial_peer drops circuit addresses.
    assert "is_relay_address(a)" in inspect.getsource(Swarm.dial_peer)
    # A second connection is trimmed through this method, which we replace per host.
    assert "self._trim_connections(peer_id)" in inspect.getsource(Swarm.add_conn)
    # New streams prefer a direct connection: we rely on it after hole punching.
    assert "prefer direct over relayed" in inspect.getsource(Swarm._select_connection)
    # get_addrs strips everything from the first /p2p/ on, so circuits cannot pass through
    # addrs_factory.
    source = inspect.getsource(BasicHost.get_addrs)
    assert 'value_for_protocol("p2p")' in source and "decapsulate" in source
    # Reservations go through these private members.
    assert hasattr(CircuitV2Transport, "_make_reservation")
    assert "self._reservations" in inspect.getsource(CircuitV2Transport.__init__)
    assert "dial_timeout" in inspect.signature(DCUtRProtocol.__init__).parameters
    # new_stream dials only when the table has no connection at all, then drops closed ones
    # (so a dead one left in the table blocks it); we remove such entries ourselves.
    source = inspect.getsource(Swarm.new_stream)
    assert "if not connections:" in source and "_filter_valid_connections" in source
    assert hasattr(Swarm, "remove_conn") and hasattr(Swarm, "notify_disconnected")
    # dial_peer hands back any open connection, a relayed one too (so connect() never goes
    # direct); dial_addr dials whatever is open, which dial_direct relies on.
    assert "Reusing existing connections" in inspect.getsource(Swarm.dial_peer)
    assert "_dial_with_retry(addr, peer_id" in inspect.getsource(Swarm.dial_addr)
    # DCUtR binds its dials to the first address we advertise.
    assert "host.get_addrs()" in inspect.getsource(_local_tcp_listen_addrs)


def test_unspecified_addresses_become_interface_addresses_loopback_last() -> None:
    addrs = [multiaddr.Multiaddr("/ip4/0.0.0.0/tcp/4001"), multiaddr.Multiaddr("/ip6/::/tcp/5")]
    out = [str(a) for a in expand_unspecified(addrs, (["127.0.0.1", "10.0.0.7"], ["2001:db8::1"]))]
    assert out == ["/ip4/127.0.0.1/tcp/4001", "/ip4/10.0.0.7/tcp/4001", "/ip6/2001:db8::1/tcp/5"]
    policy = AddressPolicy()([multiaddr.Multiaddr("/ip4/0.0.0.0/tcp/4001")])
    assert policy and not any("0.0.0.0" in str(a) for a in policy)
    assert not str(policy[0]).startswith("/ip4/127.") or len(policy) == 1


async def test_a_wildcard_listener_advertises_concrete_addresses() -> None:
    wildcard = ["/ip4/0.0.0.0/tcp/0"]
    async with peer_group(1, config=lambda: fast_config(listen_addrs=wildcard)) as [(peer, _)]:
        addrs = peer.info()["addrs"]
        assert addrs and not any("/0.0.0.0/" in a for a in addrs)
        assert any("/ip4/127.0.0.1/" in a for a in addrs)


async def test_reservation_circuit_dial_and_direct_beside_relayed() -> None:
    """On loopback: B reserves on the relay, A dials B by its circuit address only, and DCUtR
    adds a direct connection beside the relayed one (both stay; new streams go direct). A has
    no bootstrap peer: all it knows of B is the circuit address."""
    async with peer_group(1, config=lambda: fast_config(relay_service=True)) as [(relay, _)]:
        relay_addr = relay.listen_addrs()[0]
        async with (
            peer_group(1, config=lambda: fast_config(bootstrap=[relay_addr])) as [(b, rec_b)],
            peer_group(1) as [(a, _)],
        ):
            with trio.fail_after(10):
                while not b.relays.circuit_addrs():
                    await trio.sleep(0.05)
            assert any("p2p-circuit" in x for x in b.info()["addrs"])
            circuit = f"{b.relays.circuit_addrs()[0]}/p2p/{b.peer_id}"
            await a.connect(circuit)
            kinds = {link["kind"] for c in a.info()["connections"] if c["peer"] == str(b.peer_id)
                     for link in c["links"]}  # fmt: skip
            assert "relayed" in kinds
            b.start_protocol("/t/1.0.0")
            await a.send(str(b.peer_id), "/t/1.0.0", {"n": 1})
            with trio.fail_after(15):
                while True:
                    links = [
                        link["kind"]
                        for c in b.info()["connections"]
                        if c["peer"] == str(a.peer_id)
                        for link in c["links"]
                    ]
                    if "relayed" in links and ("direct" in links or "hole-punched" in links):
                        break
                    await trio.sleep(0.1)
            await a.send(str(b.peer_id), "/t/1.0.0", {"n": 2})
            await rec_b.wait_for(lambda: len(rec_b.of(PeerData)) >= 2)


def test_library_autonat_and_dht_pieces_we_use() -> None:
    from libp2p.host.autonat.autonat import AUTONAT_PROTOCOL_ID
    from libp2p.kad_dht.kad_dht import KadDHT

    from core.network.nat.autonat import PROTOCOL

    assert str(AUTONAT_PROTOCOL_ID) == PROTOCOL  # our handler replaces the library's
    assert "_observed_addr_manager" in inspect.getsource(BasicHost.__init__)
    assert hasattr(Swarm, "dial_addr") and hasattr(KadDHT, "switch_mode")


async def test_autonat_service_never_dials_a_third_party_or_a_private_address() -> None:
    """Claims on another IP than the one the question came from (or private ones) are
    refused without any dial: nobody can use us to probe someone else."""
    from libp2p.host.autonat.pb.autonat_pb2 import Message
    from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes_limited

    from core.network.nat.autonat import PROTOCOL

    async with peer_group(2) as [(a, _), (b, _)]:
        await a.connect(b.listen_addrs()[0])
        for claim in ("/ip4/198.18.9.9/tcp/4001", "/ip4/127.0.0.1/tcp/4001"):
            request = Message(
                type=Message.DIAL,
                dial=Message.Dial(
                    peer=Message.PeerInfo(
                        id=a.peer_id.to_bytes(), addrs=[multiaddr.Multiaddr(claim).to_bytes()]
                    )
                ),
            )
            stream = await a.host.new_stream(b.peer_id, [PROTOCOL])
            await stream.write(encode_varint_prefixed(request.SerializeToString()))
            with trio.fail_after(5):
                raw = await read_varint_prefixed_bytes_limited(stream, 4096)
            reply = Message()
            reply.ParseFromString(raw)
            assert reply.dialResponse.status == Message.E_DIAL_REFUSED, claim
        # Garbage gets an answer, not a crash.
        stream = await a.host.new_stream(b.peer_id, [PROTOCOL])
        await stream.write(encode_varint_prefixed(b"\xff\xfe garbage"))
        with trio.fail_after(5):
            raw = await read_varint_prefixed_bytes_limited(stream, 4096)
        reply = Message()
        reply.ParseFromString(raw)
        assert reply.dialResponse.status == Message.E_BAD_REQUEST
        assert b.running


async def test_mdns_is_never_told_a_relay_address_as_ours() -> None:
    async with peer_group(1, config=lambda: fast_config(relay_service=True)) as [(relay, _)]:
        relay_addr = relay.listen_addrs()[0]
        async with peer_group(1, config=lambda: fast_config(relays=[relay_addr])) as [(b, _)]:
            with trio.fail_after(10):
                while not b.relays.circuit_addrs():
                    await trio.sleep(0.05)
            ours = b._concrete_addrs()
            assert ours and relay_addr.split("/p2p/")[0] not in ours


def test_rendezvous_addresses_keep_circuits_whole() -> None:
    from core.network.dht import _dialable

    relay = "/ip4/198.18.0.1/tcp/4001/p2p/12D3KooWL3BPBarfXFnpCeUHgWF2eEVVGmsWiaPXNmp13bttobrt"
    target = "12D3KooWPWCpbMZzVaNbsBd2FXZbk5nYtZud877XF6Am6Gnp6hjP"
    addrs = [
        multiaddr.Multiaddr(f"/ip4/198.18.0.7/tcp/5/p2p/{target}"),
        multiaddr.Multiaddr(f"{relay}/p2p-circuit/p2p/{target}"),
    ]
    assert [str(a) for a in _dialable(addrs)] == [
        "/ip4/198.18.0.7/tcp/5",
        f"{relay}/p2p-circuit/p2p/{target}",
    ]


def test_a_contact_added_by_circuit_address_keeps_the_relay_part() -> None:
    from core.network.contacts import parse_contact

    relay = "/ip4/198.18.0.1/tcp/4001/p2p/12D3KooWL3BPBarfXFnpCeUHgWF2eEVVGmsWiaPXNmp13bttobrt"
    target = "12D3KooWPWCpbMZzVaNbsBd2FXZbk5nYtZud877XF6Am6Gnp6hjP"
    parsed = parse_contact(f"{relay}/p2p-circuit/p2p/{target}")
    assert str(parsed.peer) == target
    assert [str(a) for a in parsed.addrs] == [f"{relay}/p2p-circuit"]
    assert [str(a) for a in parse_contact(f"/ip4/1.2.3.4/tcp/5/p2p/{target}").addrs] == [
        "/ip4/1.2.3.4/tcp/5"
    ]


async def _third_direct_connection(keep: bool) -> tuple[int, bool]:
    """B holds two direct connections to A (both dialled at once, as in a swarm), then dials a
    third (an AutoNAT dial-back) and closes it: (connections left, first one still open)."""
    from libp2p.peer.peerinfo import info_from_p2p_addr

    from core import libp2p_compat as compat
    from core.profile import identity

    a, b = compat.build_host(identity.generate()), compat.build_host(identity.generate())
    if not keep:
        b.get_network()._trim_connections = Swarm._trim_connections.__get__(b.get_network())
    here = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    async with a.run(here), b.run(here):
        b.get_network().connection_config.grace_period = 0.4  # only the newest is in it
        await b.connect(info_from_p2p_addr(a.get_addrs()[0]))
        addr = multiaddr.Multiaddr(str(a.get_addrs()[0]).split("/p2p/")[0])
        await b.get_network().dial_addr(addr, a.get_id())
        first = b.get_network().get_connections(a.get_id())[0]
        await trio.sleep(0.6)
        third = await b.get_network().dial_addr(addr, a.get_id())
        await trio.sleep(0.3)
        await third.close()
        await trio.sleep(0.5)
        left = b.get_network().get_connections(a.get_id())
        return len(left), first in left and not first.muxed_conn.is_closed


async def test_library_trim_closes_the_established_connections_for_a_new_one() -> None:
    assert await _third_direct_connection(keep=False) == (0, False)


async def test_a_third_connection_costs_the_pair_none_of_the_established_ones() -> None:
    assert await _third_direct_connection(keep=True) == (2, True)
