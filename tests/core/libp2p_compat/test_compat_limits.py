"""The resource-limit workarounds of core/libp2p_compat (yamux.py, limits.py) still match the
library they patch: these fail when py-libp2p changes under them."""

from __future__ import annotations

import inspect

from libp2p.stream_muxer.yamux import yamux as lib_yamux

from core import libp2p_compat as compat
from core.libp2p_compat import yamux


def test_library_still_buffers_data_past_the_window_with_extend() -> None:
    src = inspect.getsource(lib_yamux.Yamux.handle_incoming)
    assert "self.stream_buffers[stream_id].extend(data)" in src
    assert "exceeded" in src and "receive window" in src  # warns, keeps the data
    # An exception while handling a DATA frame closes that stream's receive side only.
    assert "Mark stream as closed on read error" in src
    assert "self.stream_buffers[stream_id] = bytearray()" in inspect.getsource(lib_yamux.Yamux)
    assert "self.stream_buffers: dict[int, bytearray] = {}" in inspect.getsource(
        yamux._original_init
    )
    assert lib_yamux.MAX_WINDOW_SIZE == 16 * 1024 * 1024


def test_bound_is_installed_on_import_and_applies_to_new_buffers() -> None:
    assert compat.yamux_buffers_bounded()
    buffers = yamux._WindowedBuffers()
    buffers[1] = bytearray()
    buffers[1].extend(b"x" * 1000)
    try:
        buffers[1].extend(b"y" * yamux.BUFFER_LIMIT)
    except compat.WindowExceeded:
        pass
    else:
        raise AssertionError("a buffer grew past the window")
    assert len(buffers[1]) == 1000
    del buffers[1][:10]  # the library's reads consume in place
    assert len(buffers[1]) == 990 and isinstance(buffers[1], bytearray)


def test_trio_websocket_still_assembles_messages_where_we_spool_them() -> None:
    """core/server/wsmessages.py replaces WebSocketConnection._handle_message_event and builds the
    connection as trio_websocket.wrap_server_stream does."""
    import trio_websocket
    from trio_websocket._impl import WebSocketConnection

    src = inspect.getsource(WebSocketConnection._handle_message_event)
    assert "self._message_parts.append(event.data)" in src
    assert "await self._send_channel.send(msg)" in src
    wrap = inspect.getsource(trio_websocket.wrap_server_stream)
    assert "nursery.start_soon(connection._reader_task)" in wrap
    assert "await connection._get_request()" in wrap
    init = inspect.getsource(WebSocketConnection.__init__)
    assert "self._message_size = 0" in init and "self._recv_channel" in init


def test_library_still_holds_the_inbound_limiter_through_the_handshake() -> None:
    from libp2p.network.swarm import Swarm

    from core.libp2p_compat import limits

    handle = inspect.getsource(Swarm._handle_inbound_connection)
    assert "self._inbound_limiter.acquire_nowait()" in handle
    assert "self._inbound_limiter.release()" in handle
    do_handle = inspect.getsource(Swarm._do_handle_inbound_connection)
    assert "await self.upgrade_inbound_raw_conn(raw_conn, maddr)" in do_handle
    assert "inbound_upgrade_timeout" in inspect.getsource(limits._original_upgrade)
    assert compat.inbound_handshakes_gated()


def test_handshake_gate_counts_per_address_and_in_all() -> None:
    gate = compat.HandshakeGate(total=3, per_ip=2)
    assert gate.enter("a") and gate.enter("a") and not gate.enter("a")
    assert gate.enter("b") and not gate.enter("c")  # 3 in all
    gate.leave("a")
    assert gate.enter("c") and not gate.enter("d")
    for ip in ("a", "b", "c"):
        gate.leave(ip)
    assert not gate.pending
