"""LAN discovery (core/network/mdns.py): real multicast on 127.0.0.1, checked against
go-libp2p's rules.

Multicast works on `lo` here although `ip link` shows no MULTICAST flag: Linux only needs the
interface to be chosen explicitly (IP_MULTICAST_IF / IP_ADD_MEMBERSHIP on 127.0.0.1), which is
what `interfaces=["127.0.0.1"]` makes zeroconf do. Where it does not work, these tests skip.

The "go" helpers below re-implement, in a few lines, how go-libp2p (p2p/discovery/mdns/mdns.go)
and its zeroconf fork (github.com/libp2p/zeroconf/v2, client.go + server.go) read and write
mDNS packets, so the tests can check our packets with Go's exact (case-sensitive) rules.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from zeroconf import (
    DNSAddress,
    DNSIncoming,
    DNSOutgoing,
    DNSPointer,
    DNSQuestion,
    DNSService,
    DNSText,
)

from core.network.mdns import (
    Mdns,
    build_service_info,
    decode_txt,
    encode_txt,
    parse_dnsaddrs,
    random_instance_name,
    service_type,
    txt_strings,
)

GROUP = "224.0.0.251"
PORT = 5353
LO = "127.0.0.1"
WAIT = 10.0

TYPE_A, TYPE_PTR, TYPE_TXT, TYPE_SRV, TYPE_AAAA = 1, 12, 16, 33, 28
CLASS_IN, CACHE_FLUSH = 1, 0x8000


def new_peer_id() -> str:
    return str(ID.from_pubkey(create_new_key_pair().public_key))


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    return predicate()


class Found:
    """Collects on_found calls (they arrive on an Mdns thread)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self._lock = threading.Lock()

    def __call__(self, peer: str, addrs: list[str]) -> None:
        with self._lock:
            self.calls.append((peer, list(addrs)))

    def of(self, peer: str) -> list[list[str]]:
        with self._lock:
            return [addrs for p, addrs in self.calls if p == peer]

    def peers(self) -> set[str]:
        with self._lock:
            return {p for p, _ in self.calls}


def _multicast_on_loopback_works() -> bool:
    """Send one datagram to the mDNS group via 127.0.0.1 (on a private port) and read it back."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("", 0))
        rx.setsockopt(
            socket.IPPROTO_IP,
            socket.IP_ADD_MEMBERSHIP,
            socket.inet_aton(GROUP) + socket.inet_aton(LO),
        )
        rx.settimeout(1.0)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LO))
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        tx.sendto(b"probe", (GROUP, rx.getsockname()[1]))
        return rx.recv(64) == b"probe"
    except OSError:
        return False
    finally:
        rx.close()
        tx.close()


@pytest.fixture(scope="module")
def loopback_multicast() -> None:
    if not _multicast_on_loopback_works():
        pytest.skip(
            "IPv4 multicast via 127.0.0.1 does not work here (try: ip link set lo multicast on)"
        )


@contextmanager
def running(*instances: Mdns) -> Iterator[None]:
    try:
        for m in instances:
            m.start()
        yield
    finally:
        for m in instances:
            m.stop()


class Wire:
    """A raw socket on 224.0.0.251:5353 via 127.0.0.1: records what is sent, sends like Go."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.sock.bind(("", PORT))
        self.sock.setsockopt(
            socket.IPPROTO_IP,
            socket.IP_ADD_MEMBERSHIP,
            socket.inet_aton(GROUP) + socket.inet_aton(LO),
        )
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LO))
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
        self.sock.settimeout(0.1)
        self.packets: list[bytes] = []
        self.go_services: list[GoService] = []  # answered like go's server.go does
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._recv, daemon=True)
        self._thread.start()

    def _recv(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(9000)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.packets.append(data)
                services = list(self.go_services)
            try:
                msg = DNSIncoming(data)
                # server.go handleQuery: queries carrying records in Ns (probes) are ignored.
                if not msg.is_query() or msg.num_authorities:
                    continue
                names = {q.name for q in msg.questions}
            except Exception:
                continue
            for service in services:
                if "p2p-webapp.local." in names:
                    self.send(service.browse_answer())
                if service.name in names:
                    self.send(service.announcement())  # composeLookupAnswers

    def serve_like_go(self, service: GoService) -> None:
        """Announce `service` now and answer PTR queries for it from then on, as go does."""
        with self._lock:
            self.go_services.append(service)
        self.send(service.announcement())

    def messages(self) -> list[DNSIncoming]:
        with self._lock:
            return [DNSIncoming(p) for p in self.packets]

    def send(self, out: DNSOutgoing) -> None:
        for packet in out.packets():
            self.sock.sendto(packet, (GROUP, PORT))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def wire(loopback_multicast: None) -> Iterator[Wire]:
    w = Wire()
    yield w
    w.close()


# -- Go's side, re-implemented from github.com/libp2p/zeroconf (client.go, server.go) ----------


def go_txt(rdata: bytes) -> list[str]:
    """miekg/dns TXT strings (no tolerance needed: only used on packets we produced)."""
    out, i = [], 0
    while i < len(rdata):
        n = rdata[i]
        out.append(rdata[i + 1 : i + 1 + n].decode())
        i += 1 + n
    return out


def go_browse(
    messages: list[DNSIncoming], service: str = "p2p-webapp", domain: str = "local"
) -> dict[str, dict[str, Any]]:
    """Entries libp2p/zeroconf's Browse would deliver (client.go mainloop), per message:
    PTR must be named exactly `<service>.<domain>.`; SRV/TXT names must end with it; A/AAAA
    attach to the entry whose SRV target equals their name; entries without any IP are dropped;
    TTL 0 records expire the entry."""
    service_name = f"{service}.{domain}."
    delivered: dict[str, dict[str, Any]] = {}
    for msg in messages:
        entries: dict[str, dict[str, Any]] = {}
        records = msg.answers()

        def entry(name: str, entries: dict[str, dict[str, Any]] = entries) -> dict[str, Any]:
            return entries.setdefault(name, {"host": None, "port": None, "text": [], "ips": []})

        for rr in records:  # Answer + Ns + Extra, like client.go
            if rr.type == TYPE_PTR and rr.name == service_name:
                entry(rr.alias)["ttl"] = rr.ttl  # each record resets the entry's expiry
            elif rr.type == TYPE_SRV and rr.name.endswith(service_name):
                e = entry(rr.name)
                e["host"], e["port"], e["ttl"] = rr.server, rr.port, rr.ttl
            elif rr.type == TYPE_TXT and rr.name.endswith(service_name):
                e = entry(rr.name)
                e["text"], e["ttl"] = go_txt(rr.text), rr.ttl
        for rr in records:
            if rr.type in (TYPE_A, TYPE_AAAA):
                for e in entries.values():
                    if e["host"] == rr.name:
                        e["ips"].append(
                            socket.inet_ntop(
                                socket.AF_INET if rr.type == TYPE_A else socket.AF_INET6, rr.address
                            )
                        )
        for name, e in entries.items():
            if e["ips"] and e.get("ttl", 0) > 0:
                delivered[name] = e
    return delivered


def go_query(service: str = "p2p-webapp") -> DNSOutgoing:
    """client.go query(): one PTR question for `<service>.local.`, QM, no known answers."""
    out = DNSOutgoing(0)
    out.add_question(DNSQuestion(f"{service}.local.", TYPE_PTR, CLASS_IN))
    return out


class GoService:
    """A go-libp2p peer's registration, as libp2p/zeroconf server.go puts it on the wire."""

    def __init__(
        self,
        peer_id: str,
        addrs: list[str],
        instance: str | None = None,
        txt: bytes | None = None,
        ip: str = LO,
        ttl: int = 3200,
        ptr_only: bool = False,
    ) -> None:
        self.ptr_only = ptr_only  # browse answers without SRV/TXT/A (not go; other responders)
        self.instance = instance or random_instance_name() + "abcdefghijk"  # go: up to 63
        self.name = f"{self.instance}.p2p-webapp.local."
        self.host = f"{self.instance}.local."
        self.txt = (
            txt if txt is not None else encode_txt([f"dnsaddr={a}/p2p/{peer_id}" for a in addrs])
        )
        self.ip, self.ttl = ip, ttl

    def _records(self) -> dict[str, Any]:
        ttl = self.ttl
        return {
            "srv": DNSService(
                self.name, TYPE_SRV, CLASS_IN | CACHE_FLUSH, ttl, 0, 0, 4001, self.host
            ),
            "txt": DNSText(self.name, TYPE_TXT, CLASS_IN | CACHE_FLUSH, ttl, self.txt),
            "ptr": DNSPointer("p2p-webapp.local.", TYPE_PTR, CLASS_IN, ttl, self.name),
            "dnssd": DNSPointer(
                "_services._dns-sd._udp.local.", TYPE_PTR, CLASS_IN, ttl, "p2p-webapp.local."
            ),
            "a": DNSAddress(
                self.host,
                TYPE_A,
                CLASS_IN | CACHE_FLUSH,
                120 if ttl else 0,
                socket.inet_aton(self.ip),
            ),
        }

    def announcement(self) -> DNSOutgoing:
        """probe() -> composeLookupAnswers(flushCache=true): all in Answer, Response flag only."""
        r = self._records()
        out = DNSOutgoing(0x8000)
        for key in ("srv", "txt", "ptr", "dnssd", "a"):
            out.add_answer_at_time(r[key], 0)
        return out

    def browse_answer(self) -> DNSOutgoing:
        """handleQuestion(<service>.local.) -> composeBrowsingAnswers: PTR; Extra SRV, TXT, A."""
        r = self._records()
        out = DNSOutgoing(0x8400)  # SetReply + Authoritative
        out.add_answer_at_time(r["ptr"], 0)
        for key in () if self.ptr_only else ("srv", "txt", "a"):
            out.add_additional_answer(r[key])
        return out


# -- names and records ---------------------------------------------------------------------------


def test_names_and_txt_layout_are_go_libp2ps() -> None:
    """go-libp2p: RegisterProxy(peerName, "p2p-webapp", "local", 4001, peerName, ips, txts)."""
    pid = new_peer_id()
    addrs = [
        "/ip4/192.168.1.5/tcp/4001",
        "/ip4/0.0.0.0/tcp/4001",  # unspecified: never announced
        "/ip6/::/tcp/4001",
        "/ip6/fe80::1/tcp/4001",
        "/ip4/192.168.1.5/udp/4001/quic-v1",
        "/ip4/192.168.1.5/tcp/4002/ws",  # browser transport: go skips it
        "/dns4/example.com/tcp/4001",  # needs unicast DNS: go skips it
        "/dns4/box.local/tcp/4001",  # .local is fine
        f"/ip4/10.0.0.1/tcp/1/p2p/{pid}",  # our own /p2p suffix is tolerated, not doubled
        "not a multiaddr",
    ]
    expected = [
        f"dnsaddr=/ip4/192.168.1.5/tcp/4001/p2p/{pid}",
        f"dnsaddr=/ip6/fe80::1/tcp/4001/p2p/{pid}",
        f"dnsaddr=/ip4/192.168.1.5/udp/4001/quic-v1/p2p/{pid}",
        f"dnsaddr=/dns4/box.local/tcp/4001/p2p/{pid}",
        f"dnsaddr=/ip4/10.0.0.1/tcp/1/p2p/{pid}",
    ]
    assert txt_strings(pid, addrs) == expected
    assert service_type() == "p2p-webapp.local."

    instance = random_instance_name()
    info = build_service_info(pid, addrs, instance)
    assert info is not None
    assert info.type == "p2p-webapp.local."
    assert info.name == f"{instance}.p2p-webapp.local."
    assert info.server == f"{instance}.local."
    assert info.port == 4001
    # One TXT record, one <len><string> per address, nothing else (no dnsaddr2=…, no id=…).
    assert info.text == b"".join(bytes([len(s)]) + s.encode() for s in expected)
    assert decode_txt(info.text) == [s.encode() for s in expected]
    # getIPs: the first IPv4 and the first IPv6 address.
    assert info.parsed_addresses() == ["192.168.1.5", "fe80::1"]
    assert info.dns_pointer().name == "p2p-webapp.local."
    assert info.dns_pointer().alias == info.name
    assert info.dns_service().server == f"{instance}.local."
    assert info.other_ttl == 3200  # libp2p/zeroconf defaultTTL (PTR, TXT)
    assert info.host_ttl == 120  # A/AAAA (and, in python-zeroconf, SRV)

    # Nothing announceable -> no registration at all (go refuses too).
    unusable = ["/ip4/0.0.0.0/tcp/1", "/ip4/1.2.3.4/tcp/1/ws"]
    assert build_service_info(pid, unusable, instance) is None
    assert build_service_info(pid, ["/dns4/box.local/tcp/1"], instance) is None  # no IP for A


def test_instance_names_look_like_go_libp2ps() -> None:
    names = {random_instance_name() for _ in range(300)}
    assert len(names) == 300
    for name in names:
        # go: 32-63 of [a-z0-9]; python-zeroconf caps `<instance>.p2p-webapp` at 63 bytes.
        assert re.fullmatch(r"[a-z0-9]{32,52}", name), name
    assert len({len(n) for n in names}) > 10  # random lengths, like go's


def test_parse_dnsaddrs_like_go_and_never_raises() -> None:
    me, a, b = new_peer_id(), new_peer_id(), new_peer_id()
    strings = [
        f"dnsaddr=/ip4/192.168.1.7/tcp/4001/p2p/{a}".encode(),
        f"dnsaddr=/ip4/192.168.1.7/udp/4001/quic-v1/p2p/{a}".encode(),
        f"dnsaddr=/ip4/192.168.1.7/tcp/4001/p2p/{a}".encode(),  # duplicate
        f"dnsaddr=/ip4/192.168.1.8/tcp/4001/p2p/{b}".encode(),  # a second peer in one TXT
        f"dnsaddr=/ip4/192.168.1.9/tcp/4001/p2p/{me}".encode(),  # ourselves
        f"dnsaddr=/ip4/0.0.0.0/tcp/4001/p2p/{a}".encode(),  # unspecified
        f"DNSADDR=/ip4/192.168.1.7/tcp/9/p2p/{a}".encode(),  # go's prefix check is exact
        b"dnsaddr=/ip4/192.168.1.7/tcp/4001",  # no peer id
        f"dnsaddr=/p2p/{a}".encode(),  # no address
        b"dnsaddr=/ip4/192.168.1.7/tcp/4001/p2p/notapeerid",
        b"dnsaddr=/ip4/999.1.1.1/tcp/1/p2p/" + a.encode(),
        b"dnsaddr=garbage",
        b"dnsaddr=",
        b"\xff\xfe\xfd",
        b"id=" + a.encode(),
        b"",
    ]
    assert parse_dnsaddrs(strings, own_peer_id=me) == {
        a: ["/ip4/192.168.1.7/tcp/4001", "/ip4/192.168.1.7/udp/4001/quic-v1"],
        b: ["/ip4/192.168.1.8/tcp/4001"],
    }
    # TXT RDATA whose last length byte runs past the end: keep the complete strings only.
    good = f"dnsaddr=/ip4/192.168.1.7/tcp/4001/p2p/{a}".encode()
    assert decode_txt(bytes([len(good)]) + good + b"\x40short") == [good]
    assert decode_txt(b"") == []
    assert decode_txt(b"\x00\x00") == [b"", b""]


# -- on the (loopback) wire ----------------------------------------------------------------------


def test_two_peers_find_each_other(loopback_multicast: None) -> None:
    ids = [new_peer_id(), new_peer_id()]
    found = [Found(), Found()]
    addrs = [
        ["/ip4/127.0.0.1/tcp/41001", "/ip4/0.0.0.0/tcp/41001"],
        ["/ip4/127.0.0.1/tcp/41002", "/ip4/127.0.0.1/udp/41002/quic-v1"],
    ]
    peers = [Mdns(ids[i], lambda i=i: addrs[i], found[i], interfaces=[LO]) for i in range(2)]
    started = time.monotonic()
    with running(*peers):
        assert time.monotonic() - started < 0.5, "start() must not block"
        assert wait_until(lambda: found[0].of(ids[1]) and found[1].of(ids[0]))
        assert found[0].of(ids[1])[0] == [
            "/ip4/127.0.0.1/tcp/41002",
            "/ip4/127.0.0.1/udp/41002/quic-v1",
        ]
        assert found[1].of(ids[0])[0] == ["/ip4/127.0.0.1/tcp/41001"]
        assert all(p.registered.wait(WAIT) for p in peers)
        time.sleep(1.5)  # further announcements/queries: no self-reports, no duplicates
    assert found[0].peers() == {ids[1]} and found[1].peers() == {ids[0]}
    assert len(found[0].calls) == 1 and len(found[1].calls) == 1


def test_go_browser_accepts_our_announcement_and_answers(wire: Wire) -> None:
    pid = new_peer_id()
    m = Mdns(pid, lambda: ["/ip4/127.0.0.1/tcp/41003"], Found(), interfaces=[LO])
    with running(m):
        assert m.registered.wait(WAIT)
        instance = m.instance_name
        assert instance is not None and instance.endswith(".p2p-webapp.local.")
        label = instance[: -len(".p2p-webapp.local.")]
        expected_txt = [f"dnsaddr=/ip4/127.0.0.1/tcp/41003/p2p/{pid}"]

        # 1. Our unsolicited announcement, read with Go's rules.
        announced = wait_until(lambda: go_browse(wire.messages()).get(instance))
        assert announced, [m.answers() for m in wire.messages()]
        assert announced["text"] == expected_txt
        assert announced["host"] == f"{label}.local."
        assert announced["port"] == 4001
        assert announced["ips"] == ["127.0.0.1"]

        # 2. Answer to the query Go's Browse sends (only what arrives after it counts).
        with wire._lock:
            wire.packets.clear()
        wire.send(go_query())
        answered = wait_until(
            lambda: go_browse([msg for msg in wire.messages() if msg.is_response()]).get(instance),
            5.0,
        )
        assert answered and answered["text"] == expected_txt

        # 3. The DNS-SD meta query lists our service type, as go's server does.
        with wire._lock:
            wire.packets.clear()
        meta = DNSOutgoing(0)
        meta.add_question(DNSQuestion("_services._dns-sd._udp.local.", TYPE_PTR, CLASS_IN))
        wire.send(meta)
        assert wait_until(
            lambda: any(
                rr.type == TYPE_PTR
                and rr.name == "_services._dns-sd._udp.local."
                and rr.alias == "p2p-webapp.local."
                for msg in wire.messages()
                if msg.is_response()
                for rr in msg.answers()
            ),
            5.0,
        )

    # 4. stop() says goodbye: TTL 0 for our PTR.
    assert wait_until(
        lambda: any(
            rr.type == TYPE_PTR and rr.alias == instance and rr.ttl == 0
            for msg in wire.messages()
            for rr in msg.answers()
        ),
        3.0,
    )


def test_finds_go_peers(wire: Wire) -> None:
    me, early, late = new_peer_id(), new_peer_id(), new_peer_id()
    found = Found()
    early_addrs = ["/ip4/127.0.0.1/tcp/41005", "/ip4/127.0.0.1/udp/41005/quic-v1"]
    late_addrs = ["/ip4/127.0.0.1/tcp/41006"]
    # A go peer already on the LAN: its announcement is long gone; it answers our PTR query.
    wire.serve_like_go(GoService(early, early_addrs))
    m = Mdns(me, lambda: ["/ip4/127.0.0.1/tcp/41004"], found, interfaces=[LO])
    with running(m):
        assert wait_until(lambda: found.of(early))
        assert found.of(early) == [early_addrs]
        # A go peer that starts after us: we learn of it from its unsolicited announcement.
        assert m.registered.wait(WAIT)
        with wire._lock:
            wire.go_services.clear()
        wire.send(GoService(late, late_addrs).announcement())
        assert wait_until(lambda: found.of(late))
        assert found.of(late) == [late_addrs]


def test_asks_for_the_txt_when_an_answer_lacks_it(wire: Wire) -> None:
    me, other = new_peer_id(), new_peer_id()
    found = Found()
    wire.serve_like_go(GoService(other, ["/ip4/127.0.0.1/tcp/41009"], ptr_only=True))
    m = Mdns(me, lambda: ["/ip4/127.0.0.1/tcp/41008"], found, interfaces=[LO])
    with running(m):
        assert wait_until(lambda: found.of(other))
        assert found.of(other) == [["/ip4/127.0.0.1/tcp/41009"]]


def test_malformed_records_are_ignored(wire: Wire, caplog: pytest.LogCaptureFixture) -> None:
    me, liar, good = new_peer_id(), new_peer_id(), new_peer_id()
    found = Found()
    m = Mdns(me, lambda: ["/ip4/127.0.0.1/tcp/41006"], found, interfaces=[LO])
    garbage_txts = [
        b"\x40dnsaddr=/ip4/1.2.3.4",  # length byte runs past the end
        encode_txt(["dnsaddr=garbage", "dnsaddr=/ip4/1.2.3.4/tcp/1", "hello", ""]),
        b"\x05\xff\xfe\xfd\xfc\xfb",  # not UTF-8
        encode_txt([f"dnsaddr=/ip4/0.0.0.0/tcp/1/p2p/{liar}"]),
        encode_txt([f"dnsaddr=/ip4/127.0.0.1/tcp/1/p2p/{me}"]),  # someone claiming to be us
        b"",
    ]
    with caplog.at_level(logging.DEBUG), running(m):
        assert m.registered.wait(WAIT)  # sockets open: the unsolicited packets below arrive
        for i, txt in enumerate(garbage_txts):
            wire.serve_like_go(GoService(liar, [], instance=f"malformed{i}" + "x" * 30, txt=txt))
        # A goodbye for something never seen.
        wire.send(GoService(liar, ["/ip4/127.0.0.1/tcp/2"], ttl=0).announcement())
        # Then a valid one: the listener must still be alive.
        wire.serve_like_go(GoService(good, ["/ip4/127.0.0.1/tcp/41007"]))
        assert wait_until(lambda: found.of(good))
        time.sleep(0.5)
    assert found.peers() == {good}
    assert found.of(good) == [["/ip4/127.0.0.1/tcp/41007"]]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def test_on_found_exceptions_are_contained(wire: Wire) -> None:
    calls: list[str] = []

    def explode(peer: str, addrs: list[str]) -> None:
        calls.append(peer)
        raise RuntimeError("caller bug")

    first, second = new_peer_id(), new_peer_id()
    m = Mdns(new_peer_id(), lambda: ["/ip4/127.0.0.1/tcp/41008"], explode, interfaces=[LO])
    with running(m):
        wire.serve_like_go(GoService(first, ["/ip4/127.0.0.1/tcp/1"]))
        assert wait_until(lambda: first in calls)
        wire.serve_like_go(GoService(second, ["/ip4/127.0.0.1/tcp/2"]))
        assert wait_until(lambda: second in calls)


def test_new_addresses_are_reannounced(loopback_multicast: None) -> None:
    a, b = new_peer_id(), new_peer_id()
    current = ["/ip4/127.0.0.1/tcp/41010"]
    found = Found()
    pa = Mdns(a, lambda: list(current), Found(), interfaces=[LO], refresh_interval=0.3)
    pb = Mdns(b, lambda: ["/ip4/127.0.0.1/tcp/41011"], found, interfaces=[LO])
    with running(pa, pb):
        assert wait_until(lambda: found.of(a)) and pa.registered.wait(WAIT)
        first_instance = pa.instance_name
        current[:] = ["/ip4/127.0.0.1/tcp/41012"]
        assert wait_until(lambda: ["/ip4/127.0.0.1/tcp/41012"] in found.of(a))
        # Under a new instance name, so that go's browser reports it again.
        assert wait_until(lambda: pa.instance_name not in (None, first_instance))
        assert found.of(a) == [["/ip4/127.0.0.1/tcp/41010"], ["/ip4/127.0.0.1/tcp/41012"]]


def test_no_address_yet_means_browse_only(loopback_multicast: None) -> None:
    a, b = new_peer_id(), new_peer_id()
    found_by_a = Found()
    pa = Mdns(a, lambda: ["/ip4/0.0.0.0/tcp/41013"], found_by_a, interfaces=[LO])
    pb = Mdns(b, lambda: ["/ip4/127.0.0.1/tcp/41014"], Found(), interfaces=[LO])
    with running(pa, pb):
        assert wait_until(lambda: found_by_a.of(b))
        assert not pa.registered.is_set()


def test_stop_is_bounded_idempotent_and_final(loopback_multicast: None) -> None:
    found = Found()
    m = Mdns(new_peer_id(), lambda: ["/ip4/127.0.0.1/tcp/41015"], found, interfaces=[LO])
    m.stop()  # before start: nothing to do
    m2 = Mdns(new_peer_id(), lambda: ["/ip4/127.0.0.1/tcp/41016"], found, interfaces=[LO])
    m2.start()
    m2.start()  # no-op
    t = time.monotonic()
    m2.stop()  # while it is still probing
    assert time.monotonic() - t < 5.0
    m2.stop()
    assert not m2.registered.is_set()
    with pytest.raises(RuntimeError):
        m2.start()
    with pytest.raises(RuntimeError):
        m.start()


async def test_hand_off_to_trio(loopback_multicast: None) -> None:
    """The intended use from trio: on_found hops over with the trio token; stop() off-thread."""
    import trio

    token = trio.lowlevel.current_trio_token()
    trio_thread = threading.current_thread()
    seen: list[tuple[str, list[str]]] = []
    arrived = trio.Event()

    def on_found_in_trio(peer: str, addrs: list[str]) -> None:
        assert threading.current_thread() is trio_thread
        seen.append((peer, addrs))
        arrived.set()

    def on_found(peer: str, addrs: list[str]) -> None:  # an Mdns thread
        assert threading.current_thread() is not trio_thread
        trio.from_thread.run_sync(on_found_in_trio, peer, addrs, trio_token=token)

    a, b = new_peer_id(), new_peer_id()
    pa = Mdns(a, lambda: ["/ip4/127.0.0.1/tcp/41017"], on_found, interfaces=[LO])
    pb = Mdns(b, lambda: ["/ip4/127.0.0.1/tcp/41018"], Found(), interfaces=[LO])
    pa.start()
    pb.start()
    try:
        with trio.fail_after(WAIT):
            await arrived.wait()
    finally:
        with trio.fail_after(10):
            await trio.to_thread.run_sync(pa.stop)
            await trio.to_thread.run_sync(pb.stop)
    assert seen == [(b, ["/ip4/127.0.0.1/tcp/41018"])]


async def test_two_peers_find_and_connect_over_mdns_on_loopback() -> None:
    """The whole path: announce, browse, hand over to trio, dial."""
    from core.events import PeerConnected
    from tests.conftest import fast_config, peer_group

    def cfg():
        return fast_config(mdns=True, mdns_interfaces=["127.0.0.1"])

    async with peer_group(2, config=cfg) as [(a, ra), (b, rb)]:
        await ra.wait_for(
            lambda: (
                any(e.peer == str(b.peer_id) for e in ra.of(PeerConnected))
                or any(e.peer == str(a.peer_id) for e in rb.of(PeerConnected))
            ),
            timeout=20,
        )
        assert a.info()["mdns"] is True
