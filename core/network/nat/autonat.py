"""AutoNAT v1 (``/libp2p/autonat/1.0.0``): are we reachable from the internet?

The library's server answers without really dialing back (it reuses the connection the
question came on, nat-notes trap 4), so it calls a NATed peer public. Ours, like go-libp2p's
``EnableNATService``: dial back on a *new* connection, only to claimed addresses on the IP the
question came from (so nobody can make us dial a third party), never over a relayed
connection, rate-limited per peer and overall.

The client asks several servers and needs ``CONFIRMATIONS`` distinct servers to agree before
it changes its verdict; it asks again periodically and whenever our addresses change. What
it claims: our advertised addresses plus, for each public IP peers observed us on, that IP
with our listen port (a port-preserving NAT maps the listen port to itself).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import deque
from collections.abc import Callable

import multiaddr
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.host.autonat.pb.autonat_pb2 import Message
from libp2p.peer.id import ID
from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes_limited

from core import libp2p_compat as compat
from core.network.framing import reset_quietly
from core.network.nat.addrs import is_private_or_loopback

log = logging.getLogger(__name__)

PROTOCOL = TProtocol("/libp2p/autonat/1.0.0")
MAX_MESSAGE = 4096
DIALBACK_TIMEOUT = 5.0
ASK_TIMEOUT = DIALBACK_TIMEOUT * 3 + 5
MAX_DIALBACK_ADDRS = 4
GLOBAL_PER_MINUTE = 30
PEER_PER_MINUTE = 3
"""go-libp2p's AutoNAT service throttles: 30 dial-backs a minute, 3 per peer."""
CONFIRMATIONS = 2
SERVERS_PER_ROUND = 3
CHECK_INTERVAL = 3.0
"""How often we look whether our addresses changed or a new server is connected."""
RECHECK = 300.0
"""A server's answer is good for this long; then it is asked again."""

UNKNOWN, PUBLIC, PRIVATE = "unknown", "public", "private"


def _ip_of(addr: multiaddr.Multiaddr) -> str | None:
    parts = str(addr).split("/")
    if len(parts) > 2 and parts[1] in ("ip4", "ip6"):
        return parts[2]
    return None


class AutoNatService:
    """Answers other peers' questions by dialing them back for real."""

    def __init__(self, host: IHost) -> None:
        self.host = host
        self._recent: deque[float] = deque()
        self._per_peer: dict[ID, deque[float]] = {}

    def start(self) -> None:
        self.host.set_stream_handler(PROTOCOL, self._handle)  # replaces the library's server

    def _allowed(self, peer: ID) -> bool:
        now = time.monotonic()
        for times in (self._recent, self._per_peer.setdefault(peer, deque())):
            while times and now - times[0] > 60:
                times.popleft()
        if len(self._recent) >= GLOBAL_PER_MINUTE or len(self._per_peer[peer]) >= PEER_PER_MINUTE:
            return False
        self._recent.append(now)
        self._per_peer[peer].append(now)
        self._per_peer = {p: t for p, t in self._per_peer.items() if t}
        return True

    async def _handle(self, stream: INetStream) -> None:
        try:
            with trio.fail_after(ASK_TIMEOUT):
                raw = await read_varint_prefixed_bytes_limited(stream, MAX_MESSAGE)
                status, text, addr = await self._answer(stream, raw)
                reply = Message(
                    type=Message.DIAL_RESPONSE,
                    # protobuf enum fields take the plain int at run time; the stubs want ValueType
                    dialResponse=Message.DialResponse(status=status, statusText=text),  # type: ignore[arg-type]
                )
                if addr is not None:
                    reply.dialResponse.addr = addr.to_bytes()
                await stream.write(encode_varint_prefixed(reply.SerializeToString()))
            await stream.close()
        except Exception as exc:
            log.debug("AutoNAT request failed: %s", exc)
            try:
                await stream.reset()
            except Exception:
                pass

    async def _answer(
        self, stream: INetStream, raw: bytes
    ) -> tuple[int, str, multiaddr.Multiaddr | None]:
        peer = stream.muxed_conn.peer_id
        try:
            msg = Message()
            msg.ParseFromString(raw)
        except Exception:
            return Message.E_BAD_REQUEST, "not an AutoNAT message", None
        if msg.type != Message.DIAL or not msg.HasField("dial"):
            return Message.E_BAD_REQUEST, "expected DIAL", None
        if msg.dial.peer.HasField("id") and msg.dial.peer.id != peer.to_bytes():
            return Message.E_BAD_REQUEST, "peer id does not match the connection", None
        conn = next(
            (
                c
                for c in self.host.get_network().get_connections(peer)
                if c.muxed_conn is stream.muxed_conn
            ),
            None,
        )
        if conn is None or compat.connection_kind(conn) == "relayed":
            return Message.E_DIAL_REFUSED, "no dial-back over a relayed connection", None
        observed = {_ip_of(a) for a in conn.get_transport_addresses()} - {None}
        candidates = []
        for blob in msg.dial.peer.addrs:
            try:
                addr = multiaddr.Multiaddr(blob)
            except Exception:
                continue
            if (
                _ip_of(addr) in observed
                and "/tcp/" in str(addr)
                and not compat.is_circuit(addr)
                and not is_private_or_loopback(addr)
            ):
                candidates.append(multiaddr.Multiaddr(str(addr).split("/p2p/")[0]))
        candidates = list({str(a): a for a in candidates}.values())[:MAX_DIALBACK_ADDRS]
        if not candidates:
            return Message.E_DIAL_REFUSED, "no public address on the observed IP", None
        if not self._allowed(peer):
            return Message.E_DIAL_REFUSED, "too many requests", None
        for addr in candidates:
            if await self._dial_back(addr, peer):
                return Message.OK, "", addr
        return Message.E_DIAL_ERROR, "dial back failed", None

    async def _dial_back(self, addr: multiaddr.Multiaddr, peer: ID) -> bool:
        """A new connection to exactly that address, closed again right away."""
        try:
            with trio.fail_after(DIALBACK_TIMEOUT):
                conn = await self.host.get_network().dial_addr(addr, peer)
        except Exception as exc:
            log.debug("AutoNAT dial back to %s failed: %s", addr, exc)
            return False
        try:
            await conn.close()
        except Exception:
            pass
        return True


class AutoNatClient:
    """Keeps ``status`` (unknown / public / private) from several servers' answers."""

    def __init__(self, host: IHost, on_change: Callable[[str], None]) -> None:
        self.host = host
        self.on_change = on_change
        self.status = UNKNOWN
        self._answers: dict[ID, tuple[str, float]] = {}
        """Each server's last verdict on our current addresses, and when it gave it."""
        self._claimed: set[str] = set()
        self._wake = trio.Event()

    def poke(self) -> None:
        self._wake.set()

    def recheck(self) -> None:
        """Ask again at once, forgetting the answers: what is behind our addresses changed
        even if their text did not (a port mapping makes the predicted router address real)."""
        self._claimed = set()
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            claimed = self.claims()
            if {str(a) for a in claimed} != self._claimed:
                self._claimed = {str(a) for a in claimed}
                self._answers.clear()  # new addresses: old answers say nothing about them
            if claimed:
                await self._round(claimed)  # asks only servers with no fresh answer
            with trio.move_on_after(CHECK_INTERVAL):
                await self._wake.wait()
            self._wake = trio.Event()

    def claims(self) -> list[multiaddr.Multiaddr]:
        addrs = [a for a in self.host.get_addrs() if not compat.is_circuit(a)]  # ~1-3 ms
        own = [
            multiaddr.Multiaddr(str(a).split("/p2p/")[0])
            for a in addrs
            if not is_private_or_loopback(a)
        ]
        ports = {str(a).split("/tcp/")[1].split("/")[0] for a in addrs if "/tcp/" in str(a)}
        predicted = [
            multiaddr.Multiaddr(f"/ip4/{ip}/tcp/{port}")
            for ip in compat.observed_ips(self.host)
            if ipaddress.ip_address(ip).version == 4
            for port in ports
        ]
        return list({str(a): a for a in own + predicted}.values())

    def _servers(self) -> list[ID]:
        store = self.host.get_peerstore()
        out = []
        now = time.monotonic()
        for peer in self.host.get_connected_peers():
            if peer in self._answers and now - self._answers[peer][1] < RECHECK:
                continue
            try:
                speaks = PROTOCOL in store.get_protocols(peer)
            except Exception:
                speaks = False
            direct = any(
                compat.connection_kind(c) == "direct"
                for c in self.host.get_network().get_connections(peer)
            )
            if speaks and direct:
                out.append(peer)
        return out[:SERVERS_PER_ROUND]

    async def _round(self, claimed: list[multiaddr.Multiaddr]) -> None:
        async with trio.open_nursery() as nursery:
            for server in self._servers():
                nursery.start_soon(self._ask, server, claimed)
        self._decide()

    async def _ask(self, server: ID, claimed: list[multiaddr.Multiaddr]) -> None:
        request = Message(
            type=Message.DIAL,
            dial=Message.Dial(
                peer=Message.PeerInfo(
                    id=self.host.get_id().to_bytes(), addrs=[a.to_bytes() for a in claimed]
                )
            ),
        )
        try:
            with trio.fail_after(ASK_TIMEOUT):
                stream = await self.host.new_stream(server, [PROTOCOL])
                try:
                    await stream.write(encode_varint_prefixed(request.SerializeToString()))
                    raw = await read_varint_prefixed_bytes_limited(stream, MAX_MESSAGE)
                finally:  # shielded: a timeout must not leave the stream open
                    with trio.CancelScope(shield=True):
                        await reset_quietly(stream)  # after an answer this only cleans up
            reply = Message()
            reply.ParseFromString(raw)
        except Exception as exc:
            log.debug("AutoNAT question to %s failed: %s", server, exc)
            return
        status = reply.dialResponse.status
        # Only a real dial-back result counts; a refusal says nothing about us.
        if status in (Message.OK, Message.E_DIAL_ERROR):
            verdict = PUBLIC if status == Message.OK else PRIVATE
            self._answers[server] = (verdict, time.monotonic())
        log.debug("AutoNAT %s answers %s", server, status)

    def _decide(self) -> None:
        now = time.monotonic()
        votes = [v for v, at in self._answers.values() if now - at < 2 * RECHECK]
        for verdict in (PUBLIC, PRIVATE):
            if votes.count(verdict) >= CONFIRMATIONS and votes.count(verdict) > len(votes) / 2:
                if verdict != self.status:
                    log.info("AutoNAT: %s (%d servers agree)", verdict, votes.count(verdict))
                    self.status = verdict
                    self.on_change(verdict)
                return
