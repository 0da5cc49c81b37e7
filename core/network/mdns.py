"""LAN discovery over mDNS, compatible with p2p-webapp (go-libp2p `p2p/discovery/mdns`).

What goes over the wire (wire-protocol.md §6), exactly as go-libp2p + libp2p/zeroconf send it:

- service name `p2p-webapp.local.` (go: `NewMdnsService(host, "p2p-webapp", …)`, domain `local`)
  — NOT the libp2p default `_p2p._udp.local.`;
- instance `<name>.p2p-webapp.local.`, `<name>` random `[a-z0-9]` (go: 32-63 characters; ours
  32-52, python-zeroconf's limit — go accepts any);
- PTR `p2p-webapp.local.` → instance; SRV instance → `<name>.local.` port 4001 (go passes a
  fixed 4001: "libp2p only uses the TXT records"); A/AAAA `<name>.local.` → the first IPv4 and
  the first IPv6 address of our listen addresses (go's browser drops entries without any A/AAAA);
- one TXT record on the instance holding one string per address:
  `dnsaddr=<multiaddr>/p2p/<peer ID>` (go reads only strings that start with `dnsaddr=`).

python-zeroconf handles the protocol (probing, answering, goodbyes, caching) but its
`ServiceBrowser` cannot see a service type without leading underscores (its name matching only
walks `_`-labels), and its registration refuses one unless `strict=False`. So we register with
`strict=False`, and browse with our own record listener plus a PTR query loop.

Threading: all zeroconf work runs on a worker thread owned by `Mdns` (plus zeroconf's own event
loop thread); `on_found` is called from a third thread owned by `Mdns` (the "dispatcher"), never
from the caller's (trio) thread and never from zeroconf's loop, so a callback that blocks (e.g.
`trio.from_thread.run_sync`) cannot stall mDNS. Nothing here touches trio.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import queue
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from multiaddr import Multiaddr
from multiaddr.protocols import P_P2P
from zeroconf import (
    DNSOutgoing,
    DNSQuestion,
    InterfaceChoice,
    IPVersion,
    RecordUpdate,
    RecordUpdateListener,
    ServiceInfo,
    Zeroconf,
    current_time_millis,
)

log = logging.getLogger(__name__)

DEFAULT_SERVICE = "p2p-webapp"
DOMAIN = "local"
DNSADDR_PREFIX = "dnsaddr="
#: go-libp2p passes this constant to zeroconf.RegisterProxy; nobody reads it.
SRV_PORT = 4001
#: libp2p/zeroconf's defaultTTL (PTR, SRV, TXT). python-zeroconf puts SRV with the host records.
RECORD_TTL = 3200
#: RFC 6762 §10 (and libp2p/zeroconf) use 120 s for A/AAAA.
HOST_TTL = 120

# DNS constants (RFC 1035 / 6762); zeroconf keeps its own in a private module.
_TYPE_PTR = 12
_TYPE_TXT = 16
_TYPE_SRV = 33
_CLASS_IN = 1
_FLAGS_QUERY = 0x0000

_INSTANCE_ALPHABET = string.ascii_lowercase + string.digits
#: go skips addresses using these: relayed or browser-only transports are useless on a LAN and
#: would only make the mDNS packet bigger (go-libp2p issue #3415).
_UNSUITABLE_PROTOCOLS = frozenset(
    {"p2p-circuit", "webtransport", "webrtc", "webrtc-direct", "p2p-webrtc-direct", "ws", "wss"}
)
_DNS_PROTOCOLS = frozenset({"dns", "dns4", "dns6", "dnsaddr"})
_MAX_TXT_STRING = 255  # one DNS character-string
_QUERY_FIRST_INTERVAL = 1.0  # RFC 6762 §5.2: at least 1 s between the first two queries
_QUERY_MAX_INTERVAL = 60.0  # go's browser caps its query interval at 60 s too
_REGISTER_WAIT = 10.0  # probing takes ~1.6 s; give up (and retry later) well after that
_UNREGISTER_WAIT = 2.0
_MAX_TRACKED = 1024  # bound the per-instance state a noisy LAN can make us keep


def service_type(service: str = DEFAULT_SERVICE) -> str:
    """The DNS-SD service name go's zeroconf builds: `<service>.<domain>.` (no `_udp`)."""
    return f"{service.strip('.')}.{DOMAIN}."


def random_instance_name(service: str = DEFAULT_SERVICE) -> str:
    """A fresh instance label like go-libp2p's: 32+ random `[a-z0-9]` characters.

    Random rather than derived from the peer ID so that a restart (or new addresses) is a new
    instance: go's browser reports each instance once, until its records expire. go picks
    32-63 characters; python-zeroconf (strict=False) insists that `<instance>.<service>` fits
    63 bytes, so with `p2p-webapp` we stay within 32-52. Go accepts any length.
    """
    longest = max(1, min(63, 63 - len(service.strip(".")) - 1))
    shortest = min(32, longest)
    length = shortest + secrets.randbelow(longest - shortest + 1)
    return "".join(secrets.choice(_INSTANCE_ALPHABET) for _ in range(length))


def _is_unspecified_ip(protocol: str, value: str) -> bool:
    if protocol not in ("ip4", "ip6"):
        return False
    try:
        return ipaddress.ip_address(value).is_unspecified
    except ValueError:
        return True


def _suitable(ma: Multiaddr) -> bool:
    """go-libp2p's isSuitableForMDNS, plus: never announce 0.0.0.0 / ::."""
    items = list(ma.items())
    if not items:
        return False
    first, value = items[0]
    if first.name in ("ip4", "ip6"):
        if _is_unspecified_ip(first.name, value):
            return False
    elif first.name in _DNS_PROTOCOLS:
        # .local names are resolved by mDNS itself; anything else needs unicast DNS.
        if not str(value).lower().endswith(".local"):
            return False
    else:
        return False
    return not any(proto.name in _UNSUITABLE_PROTOCOLS for proto, _ in items)


def _announceable(peer_id: str, addrs: Iterable[str]) -> list[Multiaddr]:
    """Parse and filter our listen addresses; drops (and logs) what go would not announce."""
    out: list[Multiaddr] = []
    seen: set[str] = set()
    for text in addrs:
        try:
            ma = Multiaddr(str(text))
            items = list(ma.items())
            # Tolerate a caller that already appended our own /p2p/<id>.
            if items and items[-1][0].code == P_P2P and str(items[-1][1]) == peer_id:
                ma = ma.decapsulate_code(P_P2P)
        except Exception as exc:
            log.debug("mDNS: not announcing unparsable address %r: %s", text, exc)
            continue
        if not _suitable(ma):
            log.debug("mDNS: not announcing %s (unspecified, relayed or browser-only)", ma)
            continue
        key = str(ma)
        if key not in seen:
            seen.add(key)
            out.append(ma)
    return out


def announcement(peer_id: str, addrs: Iterable[str]) -> tuple[list[str], list[str]]:
    """What go-libp2p's startServer would announce for these addresses: (TXT strings, IPs).

    TXT strings: `dnsaddr=<multiaddr>/p2p/<peer ID>`, one per suitable address, in order. Each
    must fit one DNS character-string (255 bytes); a longer one is skipped, not split, because
    go would read the pieces as garbage.

    IPs (for the A/AAAA records): the first IPv4 and the first IPv6 address, like go's getIPs.
    Nobody dials them (TXT is authoritative), but go's browser ignores an instance whose
    response carries no A/AAAA record, and routers expect them.
    """
    txts: list[str] = []
    ip4 = ip6 = None
    for ma in _announceable(peer_id, addrs):
        entry = f"{DNSADDR_PREFIX}{ma}/p2p/{peer_id}"
        if len(entry.encode()) > _MAX_TXT_STRING:
            log.warning("mDNS: address too long for a TXT string, not announced: %s", ma)
            continue
        txts.append(entry)
        proto, value = next(iter(ma.items()))
        if proto.name == "ip4" and ip4 is None:
            ip4 = str(value)
        elif proto.name == "ip6" and ip6 is None:
            ip6 = str(value)
    return txts, [ip for ip in (ip4, ip6) if ip is not None]


def txt_strings(peer_id: str, addrs: Iterable[str]) -> list[str]:
    """The TXT strings we announce (see `announcement`)."""
    return announcement(peer_id, addrs)[0]


def encode_txt(strings: Iterable[str]) -> bytes:
    """TXT RDATA: each string as <length byte><bytes>, in order (RFC 1035 §3.3.14).

    We hand zeroconf raw RDATA because its dict form cannot repeat the key `dnsaddr`.
    """
    out = bytearray()
    for s in strings:
        raw = s.encode()
        if len(raw) > _MAX_TXT_STRING:
            raise ValueError(f"TXT string longer than 255 bytes: {s!r}")
        out.append(len(raw))
        out += raw
    return bytes(out)


def decode_txt(rdata: bytes) -> list[bytes]:
    """Split TXT RDATA into its strings; a truncated tail (malformed record) is dropped."""
    out: list[bytes] = []
    i = 0
    while i < len(rdata):
        length = rdata[i]
        end = i + 1 + length
        if end > len(rdata):
            log.debug("mDNS: truncated TXT string at offset %d, ignoring the rest", i)
            break
        out.append(bytes(rdata[i + 1 : end]))
        i = end
    return out


def parse_dnsaddrs(
    strings: Iterable[bytes], own_peer_id: str | None = None
) -> dict[str, list[str]]:
    """Peers and their addresses from TXT strings, the way go-libp2p reads them.

    Only strings starting with `dnsaddr=` count; each must be a multiaddr ending in
    `/p2p/<peer ID>`. Returns {peer ID: [multiaddr without /p2p, …]} (one TXT may name several
    peers, as in go's AddrInfosFromP2pAddrs). Anything malformed (bad UTF-8, bad multiaddr, no
    peer ID, unspecified IP) is skipped, never raised: these strings come from anyone on the LAN.
    Our own peer ID is dropped.
    """
    found: dict[str, list[str]] = {}
    for raw in strings:
        try:
            text = raw.decode("utf-8")
            if not text.startswith(DNSADDR_PREFIX):
                continue
            ma = Multiaddr(text[len(DNSADDR_PREFIX) :])
            items = list(ma.items())
            if not items or items[-1][0].code != P_P2P:
                log.debug("mDNS: dnsaddr without /p2p/<id> ignored: %r", text)
                continue
            peer = str(items[-1][1])
            transport = ma.decapsulate_code(P_P2P)
            transport_items = list(transport.items())
            if not transport_items:
                continue
            if any(_is_unspecified_ip(p.name, str(v)) for p, v in transport_items[:1]):
                continue
        except Exception as exc:
            log.debug("mDNS: malformed TXT string %r ignored: %s", raw[:300], exc)
            continue
        if own_peer_id is not None and peer == own_peer_id:
            continue
        addrs = found.setdefault(peer, [])
        addr = str(transport)
        if addr not in addrs:
            addrs.append(addr)
    return found


def build_service_info(
    peer_id: str, addrs: Iterable[str], instance: str, service: str = DEFAULT_SERVICE
) -> ServiceInfo | None:
    """Our registration, record for record what go-libp2p's startServer registers.

    None when there is nothing go could use (no announceable address, or no IP for A/AAAA —
    go refuses to register in that case too).
    """
    txts, ips = announcement(peer_id, addrs)
    return _service_info(txts, ips, instance, service)


def _service_info(
    txts: list[str], ips: list[str], instance: str, service: str
) -> ServiceInfo | None:
    if not txts or not ips:
        return None
    type_ = service_type(service)
    return ServiceInfo(
        type_,
        f"{instance}.{type_}",
        port=SRV_PORT,
        properties=encode_txt(txts),
        server=f"{instance}.{DOMAIN}.",
        host_ttl=HOST_TTL,
        other_ttl=RECORD_TTL,
        parsed_addresses=ips,
    )


class _Listener(RecordUpdateListener):
    """Watches every record zeroconf receives for our service; runs on zeroconf's loop thread.

    zeroconf calls async_update_records with all records of one packet (before caching them),
    then async_update_records_complete (after). Both must never raise: the input is the LAN.
    """

    def __init__(self, owner: Mdns) -> None:
        super().__init__()
        self._owner = owner
        self._type = service_type(owner.service)
        self._type_key = self._type.lower()
        self._suffix = "." + self._type_key
        self._pending_txt: dict[str, bytes] = {}
        self._pending_ptr: dict[str, str] = {}  # key -> instance name as received
        self._reported: dict[str, dict[str, tuple[str, ...]]] = {}  # instance -> peer -> addrs
        self._asked: dict[str, float] = {}  # instance -> when we last asked for its TXT
        self._zc: Zeroconf | None = None

    # -- zeroconf callbacks (event loop thread) -----------------------------------------------

    def async_update_records(self, zc: Zeroconf, now: float, records: list[RecordUpdate]) -> None:
        try:
            self._zc = zc
            for update in records:
                self._collect(update.new, now)
        except Exception:
            log.exception("mDNS: error handling records (ignored)")

    def async_update_records_complete(self) -> None:
        try:
            self._flush()
        except Exception:
            log.exception("mDNS: error handling records (ignored)")
        finally:
            self._pending_txt.clear()
            self._pending_ptr.clear()

    def _collect(self, record: Any, now: float) -> None:
        if record.type == _TYPE_PTR and record.key == self._type_key:
            instance = str(record.alias)
            key = instance.lower()
            if not key.endswith(self._suffix):
                return
            if record.is_expired(now):  # goodbye (TTL 0)
                self._forget(key)
            else:
                self._pending_ptr[key] = instance
        elif record.type == _TYPE_TXT and record.key.endswith(self._suffix):
            if record.is_expired(now):
                self._forget(record.key)
            else:
                self._pending_txt[record.key] = bytes(record.text)

    def _flush(self) -> None:
        for key, rdata in self._pending_txt.items():
            self._handle(key, rdata)
        for key, instance in self._pending_ptr.items():
            if key in self._pending_txt or self._owner.is_own_instance(key):
                continue
            txt = self._cached_txt(key)
            if txt is not None:
                self._handle(key, txt)
            else:
                self._ask_for_txt(key, instance)

    # -- helpers (event loop thread) -----------------------------------------------------------

    def _cached_txt(self, key: str) -> bytes | None:
        zc = self._zc
        if zc is None:
            return None
        now = current_time_millis()
        for record in zc.cache.async_all_by_details(key, _TYPE_TXT, _CLASS_IN):
            if not record.is_expired(now):
                return bytes(record.text)  # type: ignore[attr-defined]
        return None

    def _ask_for_txt(self, key: str, instance: str) -> None:
        """A PTR came without its TXT (not how go or zeroconf answer, but legal): ask for it."""
        zc = self._zc
        now = time.monotonic()
        if zc is None or now - self._asked.get(key, -1e9) < 1.0:
            return
        self._remember(self._asked, key, now)
        log.debug("mDNS: %s came without TXT; asking for it", instance)
        out = DNSOutgoing(_FLAGS_QUERY)
        out.add_question(DNSQuestion(instance, _TYPE_TXT, _CLASS_IN))
        out.add_question(DNSQuestion(instance, _TYPE_SRV, _CLASS_IN))
        zc.async_send(out)

    def _handle(self, key: str, rdata: bytes) -> None:
        if self._owner.is_own_instance(key):
            return
        peers = parse_dnsaddrs(decode_txt(rdata), own_peer_id=self._owner.peer_id)
        previous = self._reported.get(key, {})
        current = {peer: tuple(addrs) for peer, addrs in peers.items() if addrs}
        self._remember(self._reported, key, current)
        for peer, addrs in current.items():
            if previous.get(peer) != addrs:
                self._owner.report(peer, list(addrs))

    def _forget(self, key: str) -> None:
        self._reported.pop(key, None)
        self._asked.pop(key, None)

    @staticmethod
    def _remember(table: dict[str, Any], key: str, value: Any) -> None:
        table.pop(key, None)
        table[key] = value
        while len(table) > _MAX_TRACKED:
            del table[next(iter(table))]

    def async_send_browse_query(self, zc: Zeroconf) -> None:
        """PTR query for our service, with known answers (RFC 6762 §7.1) so peers we already
        know stay quiet. Go's server answers exactly this question name."""
        try:
            self._zc = zc
            out = DNSOutgoing(_FLAGS_QUERY)
            out.add_question(DNSQuestion(self._type, _TYPE_PTR, _CLASS_IN))
            now = current_time_millis()
            for record in zc.cache.async_all_by_details(self._type, _TYPE_PTR, _CLASS_IN):
                if not record.is_stale(now):
                    out.add_answer_at_time(record, now)
            zc.async_send(out)
        except Exception:
            log.exception("mDNS: could not send a query (ignored)")


class Mdns:
    """Announce this peer on the LAN and report peers announced by others (go-libp2p compatible).

    `addrs()` returns our current listen multiaddrs as strings, without `/p2p/<id>`, already
    expanded to concrete interface addresses (0.0.0.0 / :: are skipped here). It is called once
    in `start()` on the caller's thread, then every `refresh_interval` seconds from the Mdns
    worker thread (so it must be thread-safe; `None` disables re-reading). When the announceable
    addresses change we re-register under a new instance name, because go's browser reports an
    instance only once.

    `on_found(peer_id, addrs)` gets multiaddr strings without `/p2p`, for each peer whose
    announcement is new or changed (not again for identical re-announcements), from a thread
    owned by Mdns. It must not raise (exceptions are logged) and should return promptly; hand the
    result to trio with `trio.from_thread.run_sync(..., trio_token=token)` or
    `token.run_sync_soon(...)`.

    `interfaces`: IP addresses of the interfaces to use (e.g. `["127.0.0.1"]` in tests);
    None = all. IPv4 only unless `ipv6=True` (go sends and listens on both, so IPv4 suffices to
    interoperate, and it avoids IPv6 socket errors on hosts without IPv6).

    Traffic: only mDNS — multicast to 224.0.0.251:5353 (ff02::fb with ipv6) on the chosen
    interfaces, plus zeroconf's unicast replies to LAN hosts that ask for them (RFC 6762 §5.4).
    There is no "route probe" to a public address.

    Single use: start() once, stop() any number of times.
    """

    def __init__(
        self,
        peer_id: str,
        addrs: Callable[[], list[str]],
        on_found: Callable[[str, list[str]], None],
        service: str = DEFAULT_SERVICE,
        *,
        interfaces: list[str] | None = None,
        ipv6: bool = False,
        refresh_interval: float | None = 10.0,
    ) -> None:
        self.peer_id = peer_id
        self.service = service
        self._addrs = addrs
        self._on_found = on_found
        self._interfaces = list(interfaces) if interfaces else None
        self._ipv6 = ipv6
        self._refresh_interval = refresh_interval
        self._listener = _Listener(self)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._own_instances: set[str] = set()
        self._reports: queue.SimpleQueue[tuple[str, list[str]] | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._dispatcher: threading.Thread | None = None
        self._info: ServiceInfo | None = None
        self._announced: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self._last_addrs: tuple[str, ...] | None = None
        self.registered = threading.Event()  # set once our service is announced (for tests/UI)

    # -- public API -----------------------------------------------------------------------------

    @property
    def instance_name(self) -> str | None:
        """Our current DNS-SD instance name (`<random>.p2p-webapp.local.`), once registered."""
        info = self._info
        return info.name if info is not None else None

    def start(self) -> None:
        """Start announcing and browsing; returns at once (probing alone takes ~1.6 s)."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("Mdns cannot be restarted after stop(); make a new one")
            if self._started:
                return
            self._started = True
        initial = self._read_addrs()
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="peerdesk-mdns-found", daemon=True
        )
        self._worker = threading.Thread(
            target=self._run, args=(initial,), name="peerdesk-mdns", daemon=True
        )
        self._dispatcher.start()
        self._worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Unregister (goodbye packets) and close the sockets; idempotent, blocks ≤ `timeout` s.

        Blocking: from trio, call it via `trio.to_thread.run_sync`. No on_found call starts
        after stop() returns (one already running may finish).
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._stop.set()
        self._reports.put(None)
        current = threading.current_thread()
        worker, dispatcher = self._worker, self._dispatcher
        if worker is not None and worker is not current:
            worker.join(timeout)
            if worker.is_alive():
                log.warning("mDNS: zeroconf did not shut down within %.1f s", timeout)
        if dispatcher is not None and dispatcher is not current:
            # It only waits for (or sits in) a caller's callback; it makes no further calls, so
            # do not block long on it: the callback may itself be waiting for our caller.
            dispatcher.join(min(timeout, 0.5))

    # -- called by the listener (zeroconf loop thread) -------------------------------------------

    def is_own_instance(self, key: str) -> bool:
        return key.lower() in self._own_instances

    def report(self, peer: str, addrs: list[str]) -> None:
        if not self._stop.is_set():
            log.debug("mDNS: found %s at %s", peer, addrs)
            self._reports.put((peer, addrs))

    # -- threads --------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        while True:
            item = self._reports.get()
            if item is None or self._stop.is_set():
                return
            try:
                self._on_found(*item)
            except Exception:
                log.exception("mDNS: on_found callback failed (ignored)")

    def _run(self, initial: list[str] | None) -> None:
        try:
            zc = Zeroconf(
                interfaces=self._interfaces if self._interfaces else InterfaceChoice.All,
                ip_version=IPVersion.All if self._ipv6 else IPVersion.V4Only,
            )
        except Exception:
            log.exception("mDNS: cannot open multicast sockets; LAN discovery is off")
            return
        try:
            zc.add_listener(self._listener, None)
            self._loop(zc, initial)
        except Exception:
            log.exception("mDNS: worker failed; LAN discovery is off")
        finally:
            try:
                # close() sends the goodbyes for our registration (TTL 0), then shuts down.
                zc.close()
            except Exception:
                log.exception("mDNS: error while closing (ignored)")

    def _loop(self, zc: Zeroconf, initial: list[str] | None) -> None:
        interval = _QUERY_FIRST_INTERVAL
        next_query = time.monotonic()
        next_refresh = (
            time.monotonic() + self._refresh_interval if self._refresh_interval else float("inf")
        )
        pending_addrs = initial
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_query:
                assert zc.loop is not None
                zc.loop.call_soon_threadsafe(self._listener.async_send_browse_query, zc)
                next_query = now + interval
                interval = min(interval * 2, _QUERY_MAX_INTERVAL)
            if pending_addrs is not None:
                try:
                    self._sync_registration(zc, pending_addrs)
                except Exception:
                    log.exception("mDNS: could not announce; browsing only until addresses change")
                pending_addrs = None
            if self._refresh_interval and time.monotonic() >= next_refresh:
                pending_addrs = self._read_addrs()
                next_refresh = time.monotonic() + self._refresh_interval
                continue
            self._stop.wait(max(0.0, min(next_query, next_refresh) - time.monotonic()))

    def _read_addrs(self) -> list[str] | None:
        try:
            return [str(a) for a in self._addrs()]
        except Exception:
            log.exception("mDNS: addrs() failed; keeping the previous announcement")
            return None

    def _sync_registration(self, zc: Zeroconf, addrs: list[str]) -> None:
        """(Re-)register when the announceable addresses changed; runs on the worker thread."""
        if tuple(addrs) == self._last_addrs:
            return
        self._last_addrs = tuple(addrs)
        txts, ips = announcement(self.peer_id, addrs)
        wanted = (tuple(txts), tuple(ips))
        if wanted == self._announced:
            return
        if self._info is not None:
            old, self._info = self._info, None
            self.registered.clear()
            self._wait(zc, zc.async_unregister_service(old), _UNREGISTER_WAIT)
        self._announced = wanted
        info = _service_info(txts, ips, random_instance_name(self.service), self.service)
        if info is None:
            log.info("mDNS: no LAN-announceable address (have %s); browsing only", addrs)
            return
        self._own_instances.add(info.name.lower())
        # strict=False: python-zeroconf otherwise insists on `_service._udp.local.`.
        if self._wait(zc, zc.async_register_service(info, strict=False), _REGISTER_WAIT):
            self._info = info
            self.registered.set()
            log.info("mDNS: announced %s as %s", self.peer_id, info.name)
        else:  # retry on the next refresh
            self._announced = None
            self._last_addrs = None

    def _wait(self, zc: Zeroconf, coro: Any, timeout: float) -> bool:
        """Run a zeroconf coroutine on its loop; give up on stop() or after `timeout` s."""
        assert zc.loop is not None
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, zc.loop)
        deadline = time.monotonic() + timeout
        while not future.done():
            if self._stop.wait(0.05) or time.monotonic() > deadline:
                future.cancel()
                if not self._stop.is_set():
                    log.warning("mDNS: zeroconf did not answer within %.0f s", timeout)
                return False
        try:
            future.result()
        except Exception as exc:
            log.warning("mDNS: registration change failed: %r", exc)
            return False
        return True
