"""Several peers in one process (p2p-webapp's PeerManager).

Each WebSocket client of ``peerdesk serve`` gets its own peer with its own host. Peers of one
process connect to each other and are each other's GossipSub direct peers, so a web app opened
in two tabs talks to itself at once, without waiting for discovery.
"""

from __future__ import annotations

import logging
import re
import string
from pathlib import Path

import trio
from libp2p.crypto.keys import KeyPair
from libp2p.peer.peerinfo import PeerInfo

from . import identity
from . import libp2p_compat as compat
from .events import EventSink
from .peer import Peer, PeerConfig

log = logging.getLogger(__name__)


class PeerInUse(Exception):
    pass


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
    def __init__(self, config: PeerConfig) -> None:
        self.config = config
        self.peers: dict[str, Peer] = {}
        self._created = 0
        self._nursery: trio.Nursery | None = None
        self._lock = trio.Lock()

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
        """Start a peer (a fresh identity unless one is given) and join it to its siblings.
        Raises PeerInUse if that identity already runs here."""
        if self._nursery is None:
            raise RuntimeError("peer manager is not running")
        key_pair = key_pair or identity.generate()
        peer_id = str(identity.peer_id(key_pair))
        async with self._lock:
            if peer_id in self.peers:
                raise PeerInUse(f"peer {peer_id} is already running in this process")
            config = self._config_for_next(peer_id)
            peer = Peer(key_pair, config, emit, alias=alias_for(self._created), **peer_kwargs)  # type: ignore[arg-type]
            self._created += 1
            self.peers[peer_id] = peer
            try:
                await self._nursery.start(self._run_peer, peer)
            except BaseException:
                self.peers.pop(peer_id, None)
                raise
            await self._join_siblings(peer)
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

    async def _run_peer(self, peer: Peer, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            await peer.run(task_status=task_status)
        except Exception:
            log.exception("%s stopped with an error", peer.alias)
        finally:
            self.peers.pop(str(peer.peer_id), None)

    async def _join_siblings(self, peer: Peer) -> None:
        for other in list(self.peers.values()):
            if other is peer or not other.running:
                continue
            compat.add_direct_peer(other.router, PeerInfo(peer.peer_id, peer.host.get_addrs()))
            compat.add_direct_peer(peer.router, PeerInfo(other.peer_id, other.host.get_addrs()))
            if not await peer.dial(PeerInfo(other.peer_id, other.host.get_addrs())):
                log.warning("%s could not reach sibling %s", peer.alias, other.alias)

    async def remove_peer(self, peer_id: str) -> None:
        peer = self.peers.pop(peer_id, None)
        if peer is None:
            return
        for other in self.peers.values():
            compat.remove_direct_peer(other.router, peer.peer_id)
        peer.stop()
        with trio.move_on_after(10):
            await peer.stopped.wait()

    async def close(self) -> None:
        async with trio.open_nursery() as nursery:
            for peer_id in list(self.peers):
                nursery.start_soon(self.remove_peer, peer_id)
