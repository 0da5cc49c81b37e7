"""``ipfs://`` and ``/ipfs/`` links, and handing them to the Peerdesk that is already running.

The desktop opens links by starting ``peerdesk <link>``; a second window with a second peer on
the same profile would be wrong (same identity twice), so a running instance listens on a
local socket named after the profile, and a new process only forwards the link to it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtNetwork import QLocalServer, QLocalSocket

FORWARD_TIMEOUT_MS = 1500
_LINK = re.compile(r"^(?:(ipfs|ipns)://|/(ipfs|ipns)/)([^/?#]+)(/[^?#]*)?")


class LinkError(ValueError):
    pass


def parse_link(text: str) -> tuple[str, str, str]:
    """``ipfs://CID/path`` or ``/ipfs/CID/path`` → (scheme, CID or name, path)."""
    match = _LINK.match(text.strip())
    if not match:
        raise LinkError(f"{text!r} is not an ipfs:// or /ipfs/ link")
    scheme = match.group(1) or match.group(2)
    return scheme, match.group(3), (match.group(4) or "").strip("/")


def server_name(data_dir: Path) -> str:
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    return f"peerdesk-{os.getuid() if hasattr(os, 'getuid') else 0}-{digest}"


def forward(data_dir: Path, link: str) -> bool:
    """Send ``link`` to a running instance; False if none is listening."""
    socket = QLocalSocket()
    socket.connectToServer(server_name(data_dir))
    if not socket.waitForConnected(FORWARD_TIMEOUT_MS):
        return False
    socket.write((link + "\n").encode())
    socket.waitForBytesWritten(FORWARD_TIMEOUT_MS)
    socket.disconnectFromServer()
    return True


class LinkServer(QObject):
    """Receives links from later ``peerdesk <link>`` processes."""

    def __init__(self, data_dir: Path, on_link: Callable[[str], None]) -> None:
        super().__init__()
        self.on_link = on_link
        self.server = QLocalServer(self)
        name = server_name(data_dir)
        QLocalServer.removeServer(name)  # a stale socket of a crashed instance
        self.server.listen(name)
        self.server.newConnection.connect(self._accept)

    def _accept(self) -> None:
        while self.server.hasPendingConnections():
            socket = self.server.nextPendingConnection()
            socket.readyRead.connect(lambda s=socket: self._read(s))

    def _read(self, socket: QLocalSocket) -> None:
        while socket.canReadLine():
            line = bytes(socket.readLine().data()).decode(errors="replace").strip()
            if line:
                self.on_link(line)
