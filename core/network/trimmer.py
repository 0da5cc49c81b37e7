"""Connection trimming with watermarks, as go-libp2p's BasicConnMgr does it.

py-libp2p's own pruner never closes a connection that has an open stream, and every peer that
speaks GossipSub keeps one open for good — so above the high watermark nothing was ever
trimmed. Here, once connections exceed the high watermark, the least valuable peers (lowest
tag sum, then the newest-but-out-of-grace) are disconnected until the low watermark is reached.
Protected peers (contacts) and connections younger than the grace period are never trimmed.
"""

from __future__ import annotations

import logging
import time

import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID

log = logging.getLogger(__name__)

CHECK_INTERVAL = 10.0


class Trimmer:
    def __init__(self, host: IHost, low_water: int, high_water: int, grace_period: float) -> None:
        self.host = host
        self.low_water = low_water
        self.high_water = high_water
        self.grace_period = grace_period
        self.first_seen: dict[ID, float] = {}
        self._wake = trio.Event()

    def connected(self, peer: ID) -> None:
        self.first_seen.setdefault(peer, time.monotonic())
        self._wake.set()

    def disconnected(self, peer: ID) -> None:
        self.first_seen.pop(peer, None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            with trio.move_on_after(CHECK_INTERVAL):
                await self._wake.wait()
            self._wake = trio.Event()
            await self.trim()

    def candidates(self) -> list[ID]:
        """Peers to disconnect now, least valuable first; empty below the high watermark."""
        network = self.host.get_network()
        peers = list(self.host.get_connected_peers())
        if len(peers) <= self.high_water:
            return []
        now = time.monotonic()
        # Swarm has a tag store; the INetworkService interface does not declare it.
        tags = network.tag_store  # type: ignore[attr-defined]
        trimmable = [
            p
            for p in peers
            if not network.is_protected(p)
            and now - self.first_seen.get(p, now) >= self.grace_period
        ]
        trimmable.sort(key=lambda p: (tags.get_tag_value(p), -self.first_seen.get(p, now)))
        return trimmable[: max(0, len(peers) - self.low_water)]

    async def trim(self) -> None:
        victims = self.candidates()
        if not victims:
            return
        log.info(
            "%d connections above the high watermark %d: trimming %d",
            len(self.host.get_connected_peers()),
            self.high_water,
            len(victims),
        )
        async with trio.open_nursery() as nursery:
            for peer in victims:
                nursery.start_soon(self._disconnect, peer)

    async def _disconnect(self, peer: ID) -> None:
        try:
            with trio.move_on_after(3):
                await self.host.disconnect(peer)
        except Exception as exc:
            log.debug("trimming %s failed: %s", peer, exc)
