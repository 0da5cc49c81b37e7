"""QUIC beside TCP (core/libp2p_compat/quic.py): two peers talk over QUIC, TCP still works on
the same host; markers fail when py-libp2p changes what the workaround and the README's
"no hole punching over QUIC" rest on."""

from __future__ import annotations

import inspect

import libp2p
import trio
from libp2p.identity.identify import identify
from libp2p.network.swarm import Swarm
from libp2p.relay.circuit_v2 import dcutr
from libp2p.transport.quic.transport import QUICTransport

from core.events import PeerData
from core.peer import PeerConfig
from tests.conftest import fast_config, peer_group

CHAT = "/quic-chat/1.0.0"


def test_library_still_needs_the_workaround_and_still_cannot_punch_over_quic() -> None:
    # enable_quic=True would replace TCP by QUIC when no QUIC listen address is known yet.
    assert "replace the result with only the QUIC transport" in inspect.getsource(
        libp2p._build_transports_for_swarm
    )
    assert QUICTransport.provides_native_muxing
    # Why hole punching over QUIC is out of reach (nat-notes trap 5): identify reports every
    # observed address as TCP, DCUtR predicts TCP addresses only, and the responder side of a
    # punch refuses pre-multiplexed (QUIC) connections.
    assert "/tcp/{port}" in inspect.getsource(identify._remote_address_to_multiaddr)
    assert "udp" not in inspect.getsource(identify._remote_address_to_multiaddr)
    assert hasattr(dcutr, "_local_tcp_listen_addrs")
    assert "not supported for pre-multiplexed" in inspect.getsource(Swarm.dial_addr_as_responder)


def _both() -> PeerConfig:
    return fast_config(listen_addrs=["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"])


async def test_two_peers_talk_over_quic_and_tcp_still_works() -> None:
    async with peer_group(3, config=_both) as [(a, rec_a), (b, rec_b), (c, _)]:
        quic = [x for x in a.listen_addrs() if "/udp/" in x and "/quic-v1/" in x]
        tcp = [x for x in a.listen_addrs() if "/tcp/" in x]
        assert quic and tcp
        for peer in (a, b, c):
            peer.start_protocol(CHAT)
        with trio.fail_after(30):
            await b.connect(quic[0])
            links = [c_["links"] for c_ in b.info()["connections"] if c_["peer"] == str(a.peer_id)]
            assert links and all("/quic-v1" in addr for link in links[0] for addr in link["addrs"])
            await b.send(str(a.peer_id), CHAT, "over quic")
            await a.send(str(b.peer_id), CHAT, "and back")
            await rec_a.wait_for(lambda: any(e.data == "over quic" for e in rec_a.of(PeerData)))
            await rec_b.wait_for(lambda: any(e.data == "and back" for e in rec_b.of(PeerData)))
            # Many messages on one QUIC connection (each direct message opens a stream).
            for i in range(50):
                await b.send(str(a.peer_id), CHAT, f"m{i}")
            await rec_a.wait_for(lambda: len(rec_a.of(PeerData)) >= 51)
            await c.connect(tcp[0])
            links = [c_["links"] for c_ in c.info()["connections"] if c_["peer"] == str(a.peer_id)]
            assert links and all("/tcp/" in addr for link in links[0] for addr in link["addrs"])


def test_library_still_fails_the_peer_on_a_taken_udp_port_and_shares_reuseport() -> None:
    # What PeerdeskQuic corrects: the QUIC listener's bind error is no OSError, which is all
    # the swarm's listen catches, and the listener binds with SO_REUSEPORT.
    from libp2p.transport.quic.exceptions import QUICListenError
    from libp2p.transport.quic.listener import QUICListener

    assert not issubclass(QUICListenError, OSError)
    assert "except (OSError, OpenConnectionError, SwarmException)" in inspect.getsource(
        Swarm.listen
    )
    assert "SO_REUSEPORT" in inspect.getsource(QUICListener._create_socket)
    # What the TCP-first dial rests on: QUIC ranked first, each address dialled through
    # _dial_with_retry, a second dial of a peer waiting for the first.
    source = inspect.getsource(Swarm.dial_peer)
    assert '"quic-v1" in protos' in source and "self._dial_with_retry(" in source
    assert "_ongoing_dials" in source
    assert "transport_manager.set_swarm(self)" in inspect.getsource(Swarm.run)


def _kinds(peer: object, other: object) -> list[str]:
    info = peer.info()  # type: ignore[attr-defined]
    return [
        "quic" if "/quic-v1" in addr else "tcp"
        for c in info["connections"]
        if c["peer"] == str(other.peer_id)  # type: ignore[attr-defined]
        for link in c["links"]
        for addr in link["addrs"][:1]
    ]


def _split(peer: object) -> tuple[str, str]:
    addrs = peer.listen_addrs()  # type: ignore[attr-defined]
    return next(a for a in addrs if "/quic-v1" in a), next(a for a in addrs if "/tcp/" in a)


def _add(peer: object, other: object, *addrs: str) -> None:
    import multiaddr

    from core.libp2p_compat import strip_p2p

    plain = strip_p2p([multiaddr.Multiaddr(a) for a in addrs])
    peer.host.get_peerstore().add_addrs(other.peer_id, plain, 600)  # type: ignore[attr-defined]


async def test_a_peer_offering_tcp_and_quic_is_dialled_over_tcp() -> None:
    async with peer_group(2, config=_both) as [(a, _), (b, _)]:
        quic, tcp = _split(a)
        _add(b, a, quic, tcp)
        with trio.fail_after(30):
            await b.connect(tcp)
        assert _kinds(b, a) == ["tcp"]


async def test_quic_carries_the_dial_when_tcp_is_refused_or_stalls() -> None:
    import socket

    async with peer_group(3, config=_both) as [(a, rec_a), (b, _), (c, _)]:
        a.start_protocol(CHAT)
        quic = _split(a)[0]
        # b: a's TCP address leads nowhere (refused at once).
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            dead = closed.getsockname()[1]
        _add(b, a, quic, f"/ip4/127.0.0.1/tcp/{dead}")
        # c: a's TCP address accepts and then says nothing (a middlebox eating the handshake).
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            _add(c, a, quic, f"/ip4/127.0.0.1/tcp/{silent.getsockname()[1]}")
            with trio.fail_after(30):
                await b.send(str(a.peer_id), CHAT, "by quic after a refusal")
                # QUIC_FALLBACK_DELAY (5 s) is past this config's 2 s direct-open bound:
                # connect (bounded by the peer's 10 s dial timeout) waits out the stall.
                await c.connect(quic)
                await c.send(str(a.peer_id), CHAT, "by quic after a stall")
                await rec_a.wait_for(lambda: len(rec_a.of(PeerData)) >= 2)
            assert _kinds(b, a) == ["quic"] and _kinds(c, a) == ["quic"]


async def test_a_taken_udp_port_moves_quic_and_the_peer_starts() -> None:
    import socket

    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as shared,
    ):
        plain.bind(("127.0.0.1", 0))
        shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        shared.bind(("127.0.0.1", 0))
        ports = [plain.getsockname()[1], shared.getsockname()[1]]

        def on_taken_ports() -> PeerConfig:
            port = ports.pop(0)
            return fast_config(
                listen_addrs=[f"/ip4/127.0.0.1/tcp/{port}", f"/ip4/127.0.0.1/udp/{port}/quic-v1"]
            )

        held = list(ports)
        async with peer_group(2, config=on_taken_ports) as [(a, rec_a), (b, _)]:
            for peer, port in zip((a, b), held, strict=True):
                quic, tcp = _split(peer)
                assert f"/tcp/{port}/" in tcp and f"/udp/{port}/" not in quic
            a.start_protocol(CHAT)
            with trio.fail_after(30):
                await b.connect(_split(a)[0])  # QUIC, on the port it moved to
                await b.send(str(a.peer_id), CHAT, "hi")
                await rec_a.wait_for(lambda: rec_a.of(PeerData))
            assert _kinds(b, a) == ["quic"]


async def test_a_peer_whose_quic_cannot_listen_runs_on_tcp() -> None:
    # 198.18.255.1 is on no interface here: the UDP bind fails (EADDRNOTAVAIL).
    def tcp_and_unbindable_quic() -> PeerConfig:
        return fast_config(listen_addrs=["/ip4/127.0.0.1/tcp/0", "/ip4/198.18.255.1/udp/0/quic-v1"])

    async with peer_group(1, config=tcp_and_unbindable_quic) as [(a, _)]:
        async with peer_group(1) as [(b, rec_b)]:
            assert a.running and all("/quic-v1" not in x for x in a.listen_addrs())
            b.start_protocol(CHAT)
            with trio.fail_after(30):
                await a.connect(b.listen_addrs()[0])
                await a.send(str(b.peer_id), CHAT, "tcp only")
                await rec_b.wait_for(lambda: rec_b.of(PeerData))


def test_tcp_is_advertised_before_quic_and_loopback_last() -> None:
    import multiaddr

    from core.network.nat.addrs import AddressPolicy

    out = [
        str(a)
        for a in AddressPolicy()(
            [
                multiaddr.Multiaddr("/ip4/127.0.0.1/udp/4001/quic-v1"),
                multiaddr.Multiaddr("/ip4/10.0.0.7/udp/4001/quic-v1"),
                multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/4001"),
                multiaddr.Multiaddr("/ip4/10.0.0.7/tcp/4001"),
            ]
        )
    ]
    assert out == [
        "/ip4/10.0.0.7/tcp/4001",
        "/ip4/10.0.0.7/udp/4001/quic-v1",
        "/ip4/127.0.0.1/tcp/4001",
        "/ip4/127.0.0.1/udp/4001/quic-v1",
    ]


async def test_js_libp2p_peers_without_quic_still_talk_to_quic_listening_peers() -> None:
    """js-libp2p in Node has no QUIC: it is told our QUIC addresses (identify) and must carry
    on over TCP both ways; we reach it by its id over TCP."""
    import pytest

    from tests import test_interop_js as interop

    if interop.NODE is None or not (interop.HERE / "node_modules" / "libp2p").exists():
        pytest.skip("Node.js or the interop packages (tests/interop, npm ci) are missing")
    async with peer_group(2, config=_both) as [(a, rec_a), (b, _)], trio.open_nursery() as n:
        js = await interop.start_js(n)
        js_id = js.ready["peerId"]
        assert not any("/quic" in x for x in js.ready["addrs"])
        a.start_protocol(CHAT)
        await js.cmd("handle", protocol=CHAT)
        await js.cmd("dial", addr=_split(a)[1])  # js dials us over TCP, hears of our QUIC
        answer = await js.cmd("send", peer=str(a.peer_id), protocol=CHAT, data={"n": 1})
        assert answer["attempts"] == 1
        await rec_a.wait_for(lambda: rec_a.of(PeerData))
        _add(b, _JsId(js_id), *js.ready["addrs"])  # b knows js only from its addresses
        with trio.fail_after(30):
            await b.send(js_id, CHAT, {"n": 2})  # dialled by id, answered by js's ack
        assert _kinds(b, _JsId(js_id)) == ["tcp"]
        await interop.stop_js(js)


class _JsId:
    """A js peer's id where the helpers above expect a peer."""

    def __init__(self, text: str) -> None:
        from libp2p.peer.id import ID

        self.peer_id = ID.from_base58(text)

    def __str__(self) -> str:
        return str(self.peer_id)
