"""Several peers in one process (p2p-webapp's PeerManager).

Each WebSocket client of ``peerdesk serve`` gets its own peer with its own host. Peers of one
process connect to each other and are each other's GossipSub direct peers, so a web app opened
in two tabs talks to itself at once, without waiting for discovery.
"""

from __future__ import annotations

import logging
import re
import shutil
import string
from functools import partial
from pathlib import Path

import trio
from libp2p.crypto.keys import KeyPair
from libp2p.peer.peerinfo import PeerInfo

from core import libp2p_compat as compat
from core.events import EventSink
from core.peer import Peer, PeerConfig
from core.profile import identity

log = logging.getLogger(__name__)


class PeerInUse(Exception):
    pass


class TooManyPeers(Exception):
    """The process already runs ``max_peers`` peers."""


MAX_PEERS = 64
"""Peers one process runs at most: each is a whole libp2p host (ports, DHT, tasks, a store)."""
SIBLING_DIALS = 8
"""Siblings a new peer dials at once."""


def alias_for(index: int) -> str:
    """peer-a … peer-z, peer-aa, peer-ab …: short names people can tell apart in logs."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = string.ascii_lowercase[rem] + letters
    return f"peer-{letters}"


def _any_port(addr: str) -> str:
    return re.sub(r"/tcp/\d+", "/tcp/0", addr)


class PeerManager:
    def __init__(self, config: PeerConfig, max_peers: int = MAX_PEERS) -> None:
        self.config = config
        self.max_peers = max_peers
        self.peers: dict[str, Peer] = {}
        self._ephemeral: set[str] = set()
        """Peers made without a key: nobody can come back as them, so their folder goes too."""
        self._created = 0
        self._nursery: trio.Nursery | None = None

    async def run(
        self, *, task_status: trio.TaskStatus[PeerManager] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self._nursery = None

    async def create_peer(
        self, key_pair: KeyPair | None = None, emit: EventSink | None = None, **peer_kwargs: object
    ) -> Peer:
        """Start a peer (a fresh, ephemeral identity unless one is given) and join it to its
        siblings. Raises PeerInUse if that identity already runs here, TooManyPeers past
        ``max_peers``. Creations run side by side: the identity is reserved at once (no await
        between check and insert), and no lock is held while a peer starts or dials."""
        if self._nursery is None:
            raise RuntimeError("peer manager is not running")
        ephemeral = key_pair is None
        key_pair = key_pair or identity.generate()
        peer_id = str(identity.peer_id(key_pair))
        if peer_id in self.peers:
            raise PeerInUse(f"peer {peer_id} is already running in this process")
        if len(self.peers) >= self.max_peers:
            raise TooManyPeers(f"this process already runs {self.max_peers} peers; close one first")
        config = self._config_for_next(peer_id)
        peer = Peer(key_pair, config, emit, alias=alias_for(self._created), **peer_kwargs)  # type: ignore[arg-type]
        self._created += 1
        self.peers[peer_id] = peer
        if ephemeral:
            self._ephemeral.add(peer_id)
        try:
            await self._nursery.start(self._run_peer, peer)
            await self._join_siblings(peer)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.remove_peer(peer_id)
            raise
        log.info("%s started as %s", peer.alias, peer_id)
        return peer

    def _config_for_next(self, peer_id: str) -> PeerConfig:
        """The first peer listens where the user asked; later ones on any free port of the same
        interfaces (one port cannot serve two hosts). Each identity keeps its own file store
        under ``files_dir``, so a web app that reuses its key finds its files again."""
        base = self.config
        listen = base.listen_addrs if not self.peers else [_any_port(a) for a in base.listen_addrs]
        files = str(Path(base.files_dir) / "peers" / peer_id) if base.files_dir else ""
        return PeerConfig(**{**base.__dict__, "listen_addrs": listen, "files_dir": files})

    async def _run_peer(self, peer: Peer, *, task_status: trio.TaskStatus[Peer]) -> None:
        """The folder of a keyless peer goes once the peer has stopped, here rather than in
        remove_peer: a peer may take longer to stop than remove_peer waits (60 stopping at
        once on a loaded box took over 10 s), or stop on its own with an error."""
        peer_id = str(peer.peer_id)
        try:
            await peer.run(task_status=task_status)
        except Exception:
            log.exception("%s stopped with an error", peer.alias)
        finally:
            self.peers.pop(peer_id, None)
            if peer_id in self._ephemeral:
                self._ephemeral.discard(peer_id)
                with trio.CancelScope(shield=True):
                    await self._forget_files(peer)

    @staticmethod
    async def _forget_files(peer: Peer) -> None:
        if peer.config.files_dir:
            await trio.to_thread.run_sync(
                partial(shutil.rmtree, peer.config.files_dir, ignore_errors=True)
            )

    async def _join_siblings(self, peer: Peer) -> None:
        """Siblings still starting are skipped: they join us when their own start is done."""
        limit = trio.CapacityLimiter(SIBLING_DIALS)

        async def join(other: Peer) -> None:
            compat.add_direct_peer(other.router, PeerInfo(peer.peer_id, peer.host.get_addrs()))
            compat.add_direct_peer(peer.router, PeerInfo(other.peer_id, other.host.get_addrs()))
            async with limit:
                if not await peer.dial(PeerInfo(other.peer_id, other.host.get_addrs())):
                    log.warning("%s could not reach sibling %s", peer.alias, other.alias)

        async with trio.open_nursery() as nursery:
            for other in list(self.peers.values()):
                if other is not peer and other.running:
                    nursery.start_soon(join, other)

    async def remove_peer(self, peer_id: str) -> None:
        peer = self.peers.pop(peer_id, None)
        if peer is None:
            return
        for other in self.peers.values():
            if other.running:
                compat.remove_direct_peer(other.router, peer.peer_id)
        peer.stop()
        with trio.move_on_after(10):
            await peer.stopped.wait()

    async def close(self) -> None:
        async with trio.open_nursery() as nursery:
            for peer_id in list(self.peers):
                nursery.start_soon(self.remove_peer, peer_id)
