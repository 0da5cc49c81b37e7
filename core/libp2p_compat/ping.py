"""Ping: one fresh stream per round trip instead of ``PingService``'s shared one.

py-libp2p 0.8.1's ``PingService.ping_iter`` keeps one outbound stream per peer in
``_outbound_streams`` and, before reusing it, calls ``stream.is_closed()``. On ``NetStream``
``is_closed`` is a property (a bool), so the call raises ``TypeError: 'bool' object is not
callable`` whenever a stream is cached. A stream is cached while a ping is in progress (a second
ping to that peer fails at once, and would otherwise share the stream's reads with the first),
and for ever once a ping is cancelled (``trio.Cancelled`` is not an ``Exception``, so the entry
is never popped): after one ping cut short by a timeout, every later ping of that peer raises.

``ping_rtt`` opens its own stream, makes one round trip with the library's public
``perform_ping_roundtrip`` and closes the stream, so no state outlives a call.
"""

from __future__ import annotations

import time
from typing import Any

import trio
from libp2p.abc import IHost, INetConn
from libp2p.host.ping import ID as _LIBRARY_PING_ID
from libp2p.host.ping import perform_ping_roundtrip
from libp2p.peer.id import ID

PING_PROTOCOL = _LIBRARY_PING_ID
"""``/ipfs/ping/1.0.0``, under a name that does not clash with the peer ``ID`` type."""


async def ping_rtt(host: IHost, peer: ID, timeout: float = 5.0) -> float:
    """One ping round trip to ``peer``, in milliseconds (fractions kept: loopback is < 1 ms).

    Raises ``trio.TooSlowError`` past ``timeout`` (stream opening included) and whatever the
    stream raises when the peer misbehaves (a wrong pong is a ``ValueError``)."""
    with trio.fail_after(timeout):
        stream = await host.new_stream(peer, [PING_PROTOCOL])
        try:
            start = time.perf_counter()
            await perform_ping_roundtrip(stream)
            rtt = (time.perf_counter() - start) * 1000
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.reset()
            raise
        await stream.close()
    return rtt


def muxer_rtt(conn: INetConn) -> float | None:
    """The round trip the connection's muxer measures by itself, in milliseconds (None until it
    has one): Yamux pings every 30 s on its own (``Yamux.rtt()``, as go-yamux does) and QUIC
    keeps a smoothed RTT (``get_congestion_stats``). Reading it costs nothing on the wire,
    where a ping costs a stream, a protocol negotiation and a round trip at both ends: with 50
    peers connected, pinging each every 15 s was a third of an idle peer's CPU."""
    muxed: Any = conn.muxed_conn
    seconds = 0.0
    try:
        if callable(getattr(muxed, "rtt", None)):
            seconds = float(muxed.rtt())
        elif callable(getattr(muxed, "get_congestion_stats", None)):
            seconds = float(muxed.get_congestion_stats().get("smoothed_rtt") or 0.0)
    except Exception:
        return None
    return seconds * 1000 if seconds > 0 else None
