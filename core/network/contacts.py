"""Contacts: peers the user wants kept connected (p2p-webapp's addPeers / removePeers).

Adding protects and tags the peer (so the connection manager never prunes it), dials it from
known addresses or finds it in the DHT, and keeps redialling while it is disconnected. Removing
unprotects and untags but never disconnects. Contacts persist in the profile with their last
known addresses: while a contact is connected the addresses the peerstore holds for it (the
ones dialled, and the listen addresses it announced through identify) are saved, so a contact
added by peer id alone is found again after a restart without the DHT.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from core import libp2p_compat as compat
from core.profile.identity import parse_peer_id

log = logging.getLogger(__name__)

TAG = "connected"
TAG_VALUE = 100
REDIAL_INTERVAL = 5.0
DHT_LOOKUP_INTERVAL = 30.0
DHT_LOOKUP_TIMEOUT = 30.0
MAX_SAVED_ADDRS = 8
"""Addresses kept per contact; the newest learned ones win."""


@dataclass
class ParsedContact:
    peer: ID
    addrs: list[multiaddr.Multiaddr]


def parse_contact(entry: str) -> ParsedContact:
    """A contact is a peer id, or a multiaddr ending in ``/p2p/<peer id>``."""
    entry = entry.strip()
    if entry.startswith("/"):
        try:
            addr = multiaddr.Multiaddr(entry)
            peer = parse_peer_id(addr.get_peer_id() or "")
        except Exception as exc:
            raise ValueError(f"{entry!r} is not a multiaddr with a /p2p/ peer id") from exc
        transport = entry.rsplit("/p2p/", 1)[0]  # a circuit address keeps its relay part
        return ParsedContact(peer, [multiaddr.Multiaddr(transport)] if transport else [])
    return ParsedContact(parse_peer_id(entry), [])


class Contacts:
    def __init__(
        self,
        host: IHost,
        dial: Callable[[PeerInfo], Awaitable[bool]],
        find_peer: Callable[[ID], Awaitable[PeerInfo | None]],
        saved: dict[str, list[str]],
        save: Callable[[dict[str, list[str]]], None],
        *,
        redial_interval: float = REDIAL_INTERVAL,
    ) -> None:
        self.host = host
        self.dial = dial
        self.find_peer = find_peer
        self.save = save
        self.redial_interval = redial_interval
        self._contacts: dict[ID, list[multiaddr.Multiaddr]] = {}
        self._last_lookup: dict[ID, float] = {}
        self._wake = trio.Event()
        for text, addrs in saved.items():
            try:
                parsed = parse_contact(text)
            except ValueError as exc:
                log.warning("ignoring saved contact: %s", exc)
                continue
            self._contacts[parsed.peer] = _parse_addrs(addrs)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        for peer in self._contacts:
            self._protect(peer)
        task_status.started()
        while True:
            await self._redial_all()
            self._learn_addrs()
            with trio.move_on_after(self.redial_interval):
                await self._wake.wait()
            self._wake = trio.Event()

    def snapshot(self) -> dict[str, list[str]]:
        """peer id → known addresses, as plain strings."""
        return {str(p): [str(a) for a in addrs] for p, addrs in self._contacts.items()}

    def is_contact(self, peer: ID) -> bool:
        return peer in self._contacts

    def add(self, entries: list[str]) -> dict[str, str]:
        """Returns entry → error for the entries that were refused; the rest are added."""
        errors: dict[str, str] = {}
        for entry in entries:
            try:
                parsed = parse_contact(entry)
            except ValueError as exc:
                errors[entry] = str(exc)
                continue
            if parsed.peer == self.host.get_id():
                errors[entry] = "that is this peer's own id"
                continue
            known = self._contacts.setdefault(parsed.peer, [])
            known.extend(a for a in parsed.addrs if a not in known)
            if parsed.addrs:
                self.host.get_peerstore().add_addrs(parsed.peer, parsed.addrs, 10**9)
            self._protect(parsed.peer)
        self._persist()
        self._wake.set()
        return errors

    def remove(self, entries: list[str]) -> dict[str, str]:
        errors: dict[str, str] = {}
        network = self.host.get_network()
        for entry in entries:
            try:
                parsed = parse_contact(entry)
            except ValueError as exc:
                errors[entry] = str(exc)
                continue
            self._contacts.pop(parsed.peer, None)
            network.unprotect(parsed.peer, TAG)
            network.untag_peer(parsed.peer, TAG)
        self._persist()
        return errors

    def _protect(self, peer: ID) -> None:
        network = self.host.get_network()
        network.protect(peer, TAG)
        network.tag_peer(peer, TAG, TAG_VALUE)

    def _persist(self) -> None:
        try:
            self.save(self.snapshot())
        except OSError as exc:
            log.error("could not save contacts: %s", exc)

    def _learn_addrs(self) -> None:
        """Remember the addresses of connected contacts; save only when something changed."""
        connected = set(self.host.get_connected_peers())
        changed = False
        for peer, known in self._contacts.items():
            if peer not in connected:
                continue
            fresh = [a for a in compat.known_addrs(self.host, peer) if a not in known]
            if fresh:
                known.extend(fresh)
                del known[:-MAX_SAVED_ADDRS]
                changed = True
        if changed:
            self._persist()

    async def _redial_all(self) -> None:
        connected = set(self.host.get_connected_peers())
        missing = [p for p in self._contacts if p not in connected]
        if not missing:
            return
        async with trio.open_nursery() as nursery:
            for peer in missing:
                nursery.start_soon(self._redial, peer)

    async def _redial(self, peer: ID) -> None:
        try:
            await self._try_redial(peer)
        except Exception:
            log.exception("redialling contact %s failed", peer)

    async def _try_redial(self, peer: ID) -> None:
        addrs = list(self._contacts.get(peer, []))
        addrs += [a for a in compat.known_addrs(self.host, peer) if a not in addrs]
        if addrs and await self.dial(PeerInfo(peer, addrs)):
            return
        now = time.monotonic()
        if now - self._last_lookup.get(peer, -DHT_LOOKUP_INTERVAL) < DHT_LOOKUP_INTERVAL:
            return
        self._last_lookup[peer] = now
        info = None
        with trio.move_on_after(DHT_LOOKUP_TIMEOUT):
            try:
                info = await self.find_peer(peer)
            except Exception as exc:
                log.debug("DHT lookup of %s failed: %s", peer, exc)
        if info is not None and info.addrs:
            await self.dial(info)


def _parse_addrs(texts: list[str]) -> list[multiaddr.Multiaddr]:
    out = []
    for text in texts:
        try:
            out.append(multiaddr.Multiaddr(text))
        except Exception:
            log.warning("ignoring invalid saved address %r", text)
    return out
