"""core/libp2p_compat/ping.py: the library's PingService trap still exists (these fail when
py-libp2p changes under the workaround), and ``ping_rtt`` measures real hosts where the library
cannot."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import multiaddr
import pytest
import trio
from libp2p.abc import IHost, INetStream
from libp2p.host import ping as lib_ping
from libp2p.network.stream.net_stream import NetStream
from libp2p.peer.peerinfo import info_from_p2p_addr

from core import libp2p_compat as compat
from core.profile import identity


@asynccontextmanager
async def _hosts(count: int) -> AsyncIterator[list[IHost]]:
    """Real hosts on loopback, the first connected to every other."""
    hosts = [compat.build_host(identity.generate()) for _ in range(count)]
    async with trio.open_nursery() as nursery:
        stops = []
        for host in hosts:
            stop = trio.Event()
            stops.append(stop)

            async def _run(h: IHost, s: trio.Event, task_status=trio.TASK_STATUS_IGNORED) -> None:
                async with h.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
                    task_status.started()
                    await s.wait()

            await nursery.start(_run, host, stop)
        with trio.fail_after(10):
            for other in hosts[1:]:
                addr = f"{other.get_addrs()[0]}"
                await hosts[0].connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))
        try:
            yield hosts
        finally:
            for stop in stops:
                stop.set()


async def _stall(stream: INetStream) -> None:
    """A ping handler that reads the ping and never answers."""
    await stream.read(lib_ping.PING_LENGTH)
    await trio.sleep(30)


def test_library_still_calls_the_is_closed_property_on_its_cached_stream() -> None:
    src = inspect.getsource(lib_ping.PingService.ping_iter)
    assert "self._outbound_streams.get(peer_id)" in src
    assert "stream.is_closed()" in src
    # Cancellation is not an Exception: the cached stream is popped on success or Exception only.
    assert "except Exception as error:" in src
    assert isinstance(inspect.getattr_static(NetStream, "is_closed"), property)
    assert lib_ping.ID == compat.PING_PROTOCOL == "/ipfs/ping/1.0.0"
    assert list(inspect.signature(lib_ping.perform_ping_roundtrip).parameters) == [
        "stream",
        "cancel_scope",
    ]


async def test_library_ping_fails_for_ever_after_one_cancelled_ping() -> None:
    """The trap itself: when this fails, PingService works again and ping.py can go."""
    async with _hosts(2) as (a, b):
        service = lib_ping.PingService(a)
        peer = b.get_id()
        assert len(await service.ping(peer, 1)) == 1  # a first ping works
        b.set_stream_handler(compat.PING_PROTOCOL, _stall)
        with trio.move_on_after(0.5):
            await service.ping(peer, 1)
        b.set_stream_handler(compat.PING_PROTOCOL, lib_ping.handle_ping)
        for _ in range(2):
            with trio.fail_after(5), pytest.raises(TypeError, match="not callable"):
                await service.ping(peer, 1)
        # Same hosts, same connection: the workaround still measures.
        assert await compat.ping_rtt(a, peer) >= 0


async def test_ping_rtt_measures_real_hosts_concurrently_and_recovers_from_a_stall() -> None:
    async with _hosts(3) as (a, b, c):
        rtts: list[float] = []

        async def _one(peer: IHost) -> None:
            rtts.append(await compat.ping_rtt(a, peer.get_id()))

        async with trio.open_nursery() as nursery:
            # Overlapping pings of one peer share nothing (the answering side takes 2 at once).
            for peer in (b, c, b, c):
                nursery.start_soon(_one, peer)
        assert len(rtts) == 4 and all(isinstance(r, float) and 0 <= r < 5000 for r in rtts)

        b.set_stream_handler(compat.PING_PROTOCOL, _stall)
        with pytest.raises(trio.TooSlowError):
            await compat.ping_rtt(a, b.get_id(), timeout=0.5)
        b.set_stream_handler(compat.PING_PROTOCOL, lib_ping.handle_ping)
        assert await compat.ping_rtt(a, b.get_id()) >= 0
        assert await compat.ping_rtt(a, c.get_id()) >= 0


async def test_a_wrong_pong_is_a_value_error_and_the_connection_stays() -> None:
    async def _wrong(stream: INetStream) -> None:
        await stream.read(lib_ping.PING_LENGTH)
        await stream.write(b"\x00" * lib_ping.PING_LENGTH)
        await trio.sleep(5)

    async with _hosts(2) as (a, b):
        b.set_stream_handler(compat.PING_PROTOCOL, _wrong)
        with pytest.raises(ValueError, match="mismatch"):
            await compat.ping_rtt(a, b.get_id())
        b.set_stream_handler(compat.PING_PROTOCOL, lib_ping.handle_ping)
        assert await compat.ping_rtt(a, b.get_id()) >= 0
        assert b.get_id() in a.get_connected_peers()


def test_yamux_still_measures_its_own_round_trip() -> None:
    """``muxer_rtt`` reads what these give; when they change, it silently falls back to pings."""
    from libp2p.stream_muxer.yamux import yamux
    from libp2p.transport.quic.connection import QUICConnection

    assert yamux.RTT_MEASURE_INTERVAL == 30
    assert "nursery.start_soon(self._measure_rtt_loop)" in inspect.getsource(yamux.Yamux.start)
    assert callable(yamux.Yamux.rtt)
    assert "smoothed_rtt" in inspect.getsource(QUICConnection.get_congestion_stats)


async def test_muxer_rtt_over_yamux_comes_without_a_ping() -> None:
    pings: list[int] = []

    async def _counting(stream: INetStream) -> None:
        pings.append(1)
        await lib_ping.handle_ping(stream)

    async with _hosts(2) as (a, b):
        b.set_stream_handler(compat.PING_PROTOCOL, _counting)
        (conn,) = a.get_network().get_connections(b.get_id())
        with trio.fail_after(5):
            while compat.muxer_rtt(conn) is None:
                await trio.sleep(0.05)
        rtt = compat.muxer_rtt(conn)
        assert rtt is not None and 0 < rtt < 1000
        assert pings == []
