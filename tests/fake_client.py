"""An in-memory ``PeerClient`` and ``ProfileClient`` (gui/client.py) for testing panes and the
window without a network: it records every call, answers from state the test sets, and emits
events and ``online`` when the test says so."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.profile.settings import Settings
from core.snapshots import FileEntry, FileListing, NetworkState, PeerIdentity, PeerInfo
from gui.client import ClientSignals

ME = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"


def empty_info(peer_id: str = ME) -> PeerInfo:
    return PeerInfo(
        peer_id=peer_id,
        alias="",
        addrs=(f"/ip4/127.0.0.1/tcp/4001/p2p/{peer_id}",),
        reachability="unknown",
        relay_addrs=(),
        relay_service=False,
        protocols=("/chat/1.0.0",),
        connections=(),
        topics=(),
        monitored=(),
        dht_ready=False,
        routing_table=0,
        mdns=False,
        contacts=(),
    )


class FakeClient(ClientSignals):
    running = False
    has_files = True

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []
        self.network = NetworkState(empty_info(), (), ())
        self.files = FileListing("bafyroot", ())
        self.publish_reach = 1
        self.send_error: Exception | None = None
        self.contact_errors: dict[str, str] = {}
        self.store_gate: asyncio.Event | None = None
        """When set, ``store_file`` waits for it (a transfer in flight); cancel fails it."""
        self.get_gate = asyncio.Event()
        """``get_file`` and ``save`` wait on it: a fetch that has not found the content yet."""
        self.cancelled: list[str] = []

    def go_online(self) -> None:
        self.running = True
        info = self.network.info
        self.online.emit(PeerIdentity(info.peer_id, info.addrs))

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    # -- PeerClient -------------------------------------------------------------------------

    def valid_peer_id(self, text: str) -> bool:
        return text.startswith("12D3KooW") and len(text) == len(ME)

    async def state(self) -> NetworkState:
        self.calls.append(("state",))
        return self.network

    async def dial(self, addr: str) -> str:
        self.calls.append(("dial", addr))
        return addr.rsplit("/", 1)[-1]

    async def add_contacts(self, entries: list[str]) -> dict[str, str]:
        self.calls.append(("add_contacts", list(entries)))
        return dict(self.contact_errors)

    async def remove_contacts(self, entries: list[str]) -> dict[str, str]:
        self.calls.append(("remove_contacts", list(entries)))
        return {}

    async def start_protocol(self, protocol: str) -> None:
        self.calls.append(("start_protocol", protocol))

    async def send(self, peer: str, protocol: str, value: Any) -> str:
        self.calls.append(("send", peer, protocol, value))
        if self.send_error is not None:
            raise self.send_error
        return "msg-1"

    async def subscribe(self, topic: str) -> None:
        self.calls.append(("subscribe", topic))

    async def unsubscribe(self, topic: str) -> None:
        self.calls.append(("unsubscribe", topic))

    async def publish(self, topic: str, value: Any) -> int:
        self.calls.append(("publish", topic, value))
        return self.publish_reach

    async def monitor(self, topic: str) -> None:
        self.calls.append(("monitor", topic))

    async def stop_monitor(self, topic: str) -> None:
        self.calls.append(("stop_monitor", topic))

    async def list_own_files(self) -> FileListing:
        self.calls.append(("list_own_files",))
        return self.files

    async def list_peer_files(self, peer: str) -> None:
        self.calls.append(("list_peer_files", peer))

    async def store_file(self, tree_path: str, local: Path, op: str) -> None:
        self.calls.append(("store_file", tree_path, local, op))
        if self.store_gate is not None:
            await self.store_gate.wait()
            if op in self.cancelled:
                raise RuntimeError("import cancelled")
        entry = FileEntry(tree_path, "file", f"bafy{len(self.files.entries)}", "text/plain", 1)
        self.files = replace(self.files, entries=(*self.files.entries, entry))

    def cancel_store(self, op: str) -> None:
        self.cancelled.append(op)
        if self.store_gate is not None:
            self.store_gate.set()

    async def mkdir(self, path: str) -> None:
        self.calls.append(("mkdir", path))
        entry = FileEntry(path, "directory", f"bafydir{len(self.files.entries)}")
        self.files = replace(self.files, entries=(*self.files.entries, entry))

    async def remove(self, path: str) -> None:
        self.calls.append(("remove", path))

    async def save(self, cid: str, dest: Path, peer: str, op: str) -> int:
        self.calls.append(("save", cid, dest, peer, op))
        await self.get_gate.wait()
        return 0

    async def get_file(self, cid: str, fallback: str, op: str) -> None:
        self.calls.append(("get_file", cid, fallback, op))
        await self.get_gate.wait()


class FakeProfile:
    """A profile in memory; keys are any text, and "bad" is refused like a broken key."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self.settings = Settings()
        self.key = "CAESQkey-one"

    @property
    def folder(self) -> Path:
        return self._folder

    def load_settings(self) -> Settings:
        return self.settings

    def save_settings(self, settings: Settings) -> None:
        self.settings = settings

    def peer_id(self) -> str:
        return f"peer-of-{self.key}"

    def export_identity(self) -> str:
        return self.key

    def import_identity(self, text: str) -> str:
        if text.strip() == "bad":
            raise ValueError("the key is not base64")
        self.key = text.strip()
        return self.peer_id()
