"""A protocol handler removed while multistream negotiates it (py-libp2p 0.8.1): the library
raises KeyError through the connection (and stops the peer); the guard makes it a failed
negotiation. The stream is a scripted communicator: the race needs the removal to land
exactly at the library's checkpoint, which a network cannot place on purpose."""

from __future__ import annotations

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.protocol_muxer.exceptions import MultiselectError
from libp2p.protocol_muxer.multiselect import Multiselect

from core.libp2p_compat.host import build_host

PROTO = TProtocol("/ipfs/kad/1.0.0")


class _Scripted:
    """The dialler's side: handshake, then asks for PROTO; our answer to it (the library's
    checkpoint) is when the handler goes away, as the DHT's does on a switch to client."""

    def __init__(self, selector: Multiselect) -> None:
        self.selector = selector
        self.reads = ["/multistream/1.0.0", str(PROTO)]

    async def read(self) -> str:
        await trio.lowlevel.checkpoint()
        return self.reads.pop(0)

    async def write(self, text: str) -> None:
        await trio.lowlevel.checkpoint()
        if text == str(PROTO):
            self.selector.remove_handler(PROTO)


async def _handler(stream: object) -> None:
    return None


async def test_the_library_still_raises_keyerror_for_a_handler_removed_mid_negotiation() -> None:
    selector = Multiselect()
    selector.add_handler(PROTO, _handler)
    with pytest.raises(KeyError):
        await selector.negotiate(_Scripted(selector))  # type: ignore[arg-type]


async def test_our_hosts_fail_that_negotiation_instead() -> None:
    host = build_host(create_new_key_pair())
    selector = host.get_mux()
    selector.add_handler(PROTO, _handler)
    with pytest.raises(MultiselectError):
        await selector.negotiate(_Scripted(selector))  # type: ignore[arg-type]
    # Handlers otherwise work as before.
    selector.add_handler(PROTO, _handler)
    assert PROTO in selector.handlers and selector.handlers[PROTO] is _handler
