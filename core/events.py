"""Events that leave the core. Plain frozen dataclasses: the GUI bridge turns them into Qt
signals, the WebSocket server into pushes, tests into assertions — none needs to know libp2p."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PeerData:
    """A direct message arrived on a started protocol."""

    peer: str
    protocol: str
    data: Any


@dataclass(frozen=True)
class TopicData:
    topic: str
    peer: str
    data: Any


@dataclass(frozen=True)
class PeerChange:
    """A peer joined (or left) a subscribed or monitored topic."""

    topic: str
    peer: str
    joined: bool


@dataclass(frozen=True)
class PeerConnected:
    peer: str
    addr: str
    direction: str


@dataclass(frozen=True)
class PeerDisconnected:
    peer: str


@dataclass(frozen=True)
class Delivery:
    """The outcome of one direct message: acknowledged by the remote peer, or failed."""

    peer: str
    protocol: str
    msg_id: str
    delivered: bool
    error: str = ""


@dataclass(frozen=True)
class DhtReady:
    routing_table_size: int


@dataclass(frozen=True)
class PeerFiles:
    """A file listing arrived (ours or a remote peer's): ``entries`` maps path → entry."""

    peer: str
    cid: str
    entries: dict[str, dict[str, str]]
    error: str = ""


@dataclass(frozen=True)
class GotFile:
    """The outcome of a get: ``content`` has p2p-webapp's gotFile content shape."""

    cid: str
    success: bool
    content: dict[str, Any]


@dataclass(frozen=True)
class FilesChanged:
    """Our own tree has a new root."""

    root: str


@dataclass(frozen=True)
class Progress:
    """A long import or transfer moved on; ``total`` is 0 when unknown."""

    op: str
    done: int
    total: int
    finished: bool = False


@dataclass(frozen=True)
class CoreError:
    """Something the user should hear about that is not tied to one request."""

    message: str


@dataclass(frozen=True)
class PeerFailed:
    """The peer stopped on an internal error; it no longer runs and must be restarted."""

    error: str


@dataclass(frozen=True)
class ReachabilityChanged:
    """AutoNAT's verdict changed: 'public', 'private' or 'unknown'."""

    status: str


Event = (
    PeerData
    | TopicData
    | PeerChange
    | PeerConnected
    | PeerDisconnected
    | Delivery
    | DhtReady
    | PeerFiles
    | GotFile
    | FilesChanged
    | Progress
    | CoreError
    | PeerFailed
    | ReachabilityChanged
)
EventSink = Callable[[Event], None]
