"""DCUtR: turn a relayed connection into a direct one by hole punching (TCP).

The library's protocol does the exchange and the simultaneous dials. With its default 10 s
dial timeout it spends that long on the other side's unreachable private addresses before
the punched ones (nat-notes trap 3); 2 s brings a direct connection in ~2.7 s in the lab.
Per the DCUtR spec the side that accepted the relayed connection starts the exchange; we
start it the moment such a connection appears instead of waiting for the library's 2 s loop.
New streams then prefer the direct connection (the swarm picks direct over relayed).

Beside the punch, a peer with public addresses is simply dialled (``go_direct``, with a whole
dial's bound): the library's own first try is cut at the same 2 s, which on a loaded machine
is shorter than a handshake, and in the 50-member swarm NATed members' relayed connections
then stayed relayed until the relay cut them. Any dial of a peer we reach only through a
relay does the same (``Peer._dial``): a rendezvous lookup that finds a relayed peer's public
address gets a direct connection to it.
"""

from __future__ import annotations

import logging

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from libp2p.tools.anyio_service import background_trio_service

from core import libp2p_compat as compat
from core.network.nat.addrs import is_private_or_loopback

log = logging.getLogger(__name__)

DIAL_TIMEOUT = 2
DIRECT_TIMEOUT = 10.0
"""A plain direct dial's bound (``go_direct``): what any dial of ours gets."""
IDENTIFY_WAIT = 5.0
"""How long a relayed newcomer's direct dial waits for identify to name its addresses."""


class HolePunching:
    def __init__(self, host: IHost) -> None:
        self.host = host
        self.dcutr = DCUtRProtocol(host, dial_timeout=DIAL_TIMEOUT)
        self._nursery: trio.Nursery | None = None
        self.punched: set[ID] = set()
        """Peers we reached directly by hole punching (shown as 'hole-punched')."""
        self._going_direct: set[ID] = set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with background_trio_service(self.dcutr):
            await self.dcutr.event_started.wait()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()

    def relayed_inbound(self, peer: ID) -> None:
        """A peer reached us through a relay: try to punch through to it now."""
        if self._nursery is not None:
            self._nursery.start_soon(self._punch, peer)

    def _public_addrs(
        self, peer: ID, extra: list[multiaddr.Multiaddr] | None = None
    ) -> list[multiaddr.Multiaddr]:
        try:
            known = list(self.host.get_peerstore().addrs(peer))
        except Exception:
            known = []
        return [
            a
            for a in dict.fromkeys([*(extra or []), *known])
            if not compat.is_circuit(a) and not is_private_or_loopback(a)
        ]

    async def go_direct(self, peer: ID, addrs: list[multiaddr.Multiaddr] | None = None) -> bool:
        """If we reach ``peer`` only through a relay and know public addresses of it (from
        ``addrs`` or the peerstore), dial them (one such dial per peer at a time). True if this
        dial made a direct connection. Never raises: it runs in the peer's nursery."""
        if not compat.only_relayed(self.host, peer) or peer in self._going_direct:
            return False
        self._going_direct.add(peer)
        try:
            public = self._public_addrs(peer, addrs or [])
            if public:
                with trio.move_on_after(DIRECT_TIMEOUT):
                    if await compat.dial_direct(self.host, peer, compat.strip_p2p(public)):
                        log.info("relayed peer %s: dialled directly", peer)
                        return True
                log.debug("relayed peer %s: no direct dial got through", peer)
        except Exception as exc:
            log.warning("relayed peer %s: direct dial failed: %s", peer, exc)
        finally:
            self._going_direct.discard(peer)
        return False

    async def _punch(self, peer: ID) -> None:
        """DCUtR, and beside it (not before: a public-looking address may be a router's that
        drops our dial, and the punch must not wait for that) a plain direct dial once
        identify has told us the peer's addresses."""
        dialled = False

        async def direct_once_identified() -> None:
            nonlocal dialled
            with trio.move_on_after(IDENTIFY_WAIT):
                while not self._public_addrs(peer):
                    await trio.sleep(0.25)
            dialled = await self.go_direct(peer)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(direct_once_identified)
            log.debug("hole punching to %s", peer)
            try:
                ok = await self.dcutr.initiate_hole_punch(peer)
            except Exception as exc:
                log.debug("hole punch to %s failed: %s", peer, exc)
                ok = False
        if ok and not dialled:  # the punch's check counts our dial's connection as its own
            self.punched.add(peer)
        log.info("hole punch to %s: %s", peer, "direct" if ok or dialled else "stays relayed")
