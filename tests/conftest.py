"""Shared fixtures: real peers on 127.0.0.1, every wait bounded."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from core.events import Event
from core.libp2p_compat import quiet_library_logging
from core.network.direct import DirectConfig
from core.peer import Peer, PeerConfig, new_peer

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
quiet_library_logging()
logging.getLogger("core").setLevel(logging.DEBUG)

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


def fast_config(**overrides: Any) -> PeerConfig:
    """Loopback only, no bootstrap, short retry timings so failure paths run in seconds."""
    cfg = PeerConfig(
        listen_addrs=list(LOOPBACK),
        bootstrap=[],
        mdns=False,
        direct=DirectConfig(
            ack_timeout=1.0, backoff=(0.2, 0.4), open_timeout=2.0, probe_interval=0.3, patience=20.0
        ),
        dht_ready_wait=0.5,
        contacts_redial=0.3,
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


class Recorder:
    """Collects a peer's events and waits (bounded) for the ones a test expects."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = trio.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        with trio.fail_after(timeout):
            while True:
                result = predicate()
                if result:
                    return result
                self._changed = trio.Event()
                with trio.move_on_after(0.1):
                    await self._changed.wait()


@asynccontextmanager
async def peer_group(
    count: int, *, config: Callable[[], PeerConfig] = fast_config, **kwargs: Any
) -> AsyncIterator[list[tuple[Peer, Recorder]]]:
    async with trio.open_nursery() as nursery:
        peers = []
        for _ in range(count):
            rec = Recorder()
            peer = await nursery.start(new_peer(config(), rec, **kwargs).run)
            peers.append((peer, rec))
        try:
            yield peers
        finally:
            for peer, _ in peers:
                peer.stop()
            with trio.fail_after(10):
                for peer, _ in peers:
                    await peer.stopped.wait()


async def connect(a: Peer, b: Peer) -> None:
    await a.connect(b.listen_addrs()[0])


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()
