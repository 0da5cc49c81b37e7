"""Immutable snapshots of the peer's state, as the desktop sees it.

The desktop reads the peer through these values only: they are built on the core's thread
from the peer's own data (``Peer.info()`` and the topic tables) and handed across as frozen
dataclasses, so nothing on the GUI thread can read a structure the core is changing, and a
pane can be tested with a snapshot written by hand. Pure Python: no trio, no Qt, no libp2p.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PeerIdentity:
    """Who we are once the peer is up: the id and the addresses others can dial."""

    peer_id: str
    addrs: tuple[str, ...]


@dataclass(frozen=True)
class Link:
    """One transport connection to a peer (a peer can have a direct and a relayed one)."""

    addrs: tuple[str, ...]
    direction: str
    kind: str
    """'direct', 'relayed' or 'hole-punched'."""


@dataclass(frozen=True)
class Connection:
    """A connected peer, described by the connection new streams to it use."""

    peer: str
    addrs: tuple[str, ...]
    direction: str
    kind: str
    links: tuple[Link, ...]
    latency_ms: float | None
    protocols: tuple[str, ...]
    contact: bool
    since: float | None
    name: str = ""
    """The display name the peer chose (``/peerdesk/profile/1.0.0``), cleaned; "" if none."""


@dataclass(frozen=True)
class Contact:
    """A remembered peer and the addresses last known for it."""

    peer: str
    addrs: tuple[str, ...]


@dataclass(frozen=True)
class PeerInfo:
    """The peer's own state: the typed form of ``Peer.info()``."""

    peer_id: str
    alias: str
    addrs: tuple[str, ...]
    reachability: str
    relay_addrs: tuple[str, ...]
    relay_service: bool
    protocols: tuple[str, ...]
    connections: tuple[Connection, ...]
    topics: tuple[str, ...]
    monitored: tuple[str, ...]
    dht_ready: bool
    routing_table: int
    mdns: bool
    contacts: tuple[Contact, ...]

    def contact(self, peer: str) -> Contact | None:
        return next((c for c in self.contacts if c.peer == peer), None)


@dataclass(frozen=True)
class TopicMember:
    """A peer in a monitored topic, and since when it is known to be there."""

    peer: str
    since: float


@dataclass(frozen=True)
class TopicStats:
    """A monitored topic: its members (``None`` until the monitor has reported any) and
    GossipSub's mesh for it (the peers that get every message in full)."""

    topic: str
    members: tuple[TopicMember, ...] | None
    mesh: tuple[str, ...]


@dataclass(frozen=True)
class TopicMembers:
    """A joined topic and the peers in it."""

    topic: str
    peers: tuple[str, ...]


@dataclass(frozen=True)
class NetworkState:
    """Everything the window shows on each refresh, read in one turn of the core."""

    info: PeerInfo
    joined: tuple[TopicMembers, ...]
    monitored: tuple[TopicStats, ...]


@dataclass(frozen=True)
class FileEntry:
    """One entry of a file tree, in p2p-webapp's FileList terms."""

    path: str
    kind: str
    """'file' or 'directory'."""
    cid: str
    mime: str = ""
    size: int | None = None

    def wire(self) -> dict[str, Any]:
        """The FileList entry shape (what remote listings arrive in), plus the size."""
        out: dict[str, Any] = {"type": self.kind, "cid": self.cid}
        if self.kind != "directory":
            out["mimeType"] = self.mime
        if self.size is not None:
            out["size"] = self.size
        return out


@dataclass(frozen=True)
class FileListing:
    """A whole tree: its root CID and its entries."""

    root: str
    entries: tuple[FileEntry, ...]

    def wire(self) -> dict[str, dict[str, Any]]:
        return {e.path: e.wire() for e in self.entries}


# -- built from the core's data (called on the core thread) ----------------------------------


def _strs(values: Iterable[Any]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


def _link(raw: Mapping[str, Any]) -> Link:
    return Link(_strs(raw.get("addrs", ())), str(raw["direction"]), str(raw["kind"]))


def _connection(raw: Mapping[str, Any]) -> Connection:
    latency = raw.get("latency_ms")
    since = raw.get("since")
    return Connection(
        peer=str(raw["peer"]),
        addrs=_strs(raw.get("addrs", ())),
        direction=str(raw["direction"]),
        kind=str(raw["kind"]),
        links=tuple(_link(link) for link in raw.get("links", ())),
        latency_ms=None if latency is None else float(latency),
        protocols=_strs(raw.get("protocols", ())),
        contact=bool(raw.get("contact")),
        since=None if since is None else float(since),
        name=str(raw.get("name") or ""),
    )


def peer_info(raw: Mapping[str, Any]) -> PeerInfo:
    """The one conversion of ``Peer.info()``'s dictionary into a typed snapshot."""
    return PeerInfo(
        peer_id=str(raw["peerid"]),
        alias=str(raw.get("alias") or ""),
        addrs=_strs(raw["addrs"]),
        reachability=str(raw.get("reachability") or ""),
        relay_addrs=_strs(raw.get("relay_addrs", ())),
        relay_service=bool(raw.get("relay_service")),
        protocols=_strs(raw.get("protocols", ())),
        connections=tuple(_connection(c) for c in raw["connections"]),
        topics=_strs(raw.get("topics", ())),
        monitored=_strs(raw.get("monitored", ())),
        dht_ready=bool(raw["dht_ready"]),
        routing_table=int(raw.get("routing_table") or 0),
        mdns=bool(raw["mdns"]),
        contacts=tuple(Contact(str(p), _strs(a)) for p, a in raw["contacts"].items()),
    )


def topic_stats(topic: str, members: Mapping[str, float] | None, mesh: Iterable[Any]) -> TopicStats:
    """A monitored topic from the topic table's members (peer → first seen) and the mesh."""
    return TopicStats(
        topic,
        None
        if members is None
        else tuple(TopicMember(str(p), float(t)) for p, t in members.items()),
        tuple(sorted(str(p) for p in mesh)),
    )


def file_listing(root: str, entries: Mapping[str, Any]) -> FileListing:
    """Our own tree from the file tree's entries (path → an entry with kind, cid, mime, size)."""
    return FileListing(
        root,
        tuple(
            FileEntry(path, str(e.kind), str(e.cid), str(e.mime or ""), int(e.size))
            for path, e in entries.items()
        ),
    )
