"""A network-namespace NAT lab, built like libp2p's hole-punch interop test plan.

A "public" net (198.18.0.0/24, on a bridge in a namespace of its own) holds public hosts and
the WAN side of home routers. Each router ``MASQUERADE``s its LAN (10.x.y.0/24) and silently
drops unsolicited packets from the WAN (no RST, no ICMP), as a home router does; Linux
conntrack NAT is port-preserving with endpoint-independent mapping unless ``random=True``
(``--random-fully``), which defeats hole punching.

Every name starts with a prefix unique to the lab (namespace names are global to the machine,
and other labs may run at the same time); ``close()`` kills what the lab started and deletes
its namespaces, which removes their interfaces and rules with them. Peers run as separate
processes (``tests/nat_runner.py``) inside their namespace, driven by JSON lines on stdin.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PUBLIC_NET = "198.18.0"
ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def unavailable() -> str:
    """Why the lab cannot run here ('' when it can): it needs root, ``ip netns``, veth pairs, a
    bridge and iptables NAT inside a namespace. Probed for real, once: a container may have
    the tools but not the kernel features."""
    return _probe()


def _probe() -> str:
    if os.geteuid() != 0:
        return "the NAT lab needs root (network namespaces)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"the NAT lab needs `{tool}` (apt-get install iproute2 iptables)"
    name = f"pdprobe{secrets.token_hex(3)}"
    steps = [
        ["ip", "netns", "add", name],
        ["ip", "-n", name, "link", "add", "br0", "type", "bridge"],
        ["ip", "-n", name, "link", "add", "v0", "type", "veth", "peer", "v1"],
        ["ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
        ["ip", "netns", "exec", name, "iptables", "-t", "nat", "-A", "POSTROUTING", "-j",
         "MASQUERADE", "--random-fully"],
        ["ip", "netns", "exec", name, "iptables", "-A", "FORWARD", "-m", "conntrack",
         "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
    ]  # fmt: skip
    try:
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                return (
                    f"the NAT lab cannot run here: `{' '.join(step)}` failed: {done.stderr.strip()}"
                )
        return ""
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _sh(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


def _veth(name: str, ns: str, peer_name: str, peer_ns: str) -> None:
    """A cable: ``name`` in ``ns`` to ``peer_name`` in ``peer_ns`` (created there directly, so
    the names never meet in the root namespace, where other labs may be plugging theirs)."""
    _sh("ip", "link", "add", name, "netns", ns, "type", "veth", "peer", peer_name, "netns", peer_ns)


@dataclass
class Node:
    """A namespace with one address that peers can run in."""

    ns: str
    ip: str
    lab: Lab

    def sh(self, *argv: str) -> None:
        _sh("ip", "netns", "exec", self.ns, *argv)

    def spawn(self, *argv: str) -> subprocess.Popen[str]:
        """Any other program in this namespace (stdin a pipe: closing it asks it to stop);
        the lab ends it on close."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, *argv],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if not os.environ.get("NETLAB_DEBUG") else None,
            text=True,
        )
        self.lab.others.append(proc)
        return proc

    def peer(self, *args: str) -> RunnerPeer:
        """Start a Peerdesk peer (tests/nat_runner.py) in this namespace."""
        argv = ["ip", "netns", "exec", self.ns, sys.executable, "-m", "tests.nat_runner", *args]
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if not os.environ.get("NETLAB_DEBUG") else None,
            text=True,
            bufsize=1,
        )
        runner = RunnerPeer(proc)
        self.lab.processes.append(runner)
        return runner


NEIGHBOUR_ROOM = {"gc_thresh3": 16384, "gc_thresh2": 8192, "gc_thresh1": 4096}
"""The kernel's ARP table is one for all namespaces, and its defaults (128 / 512 / 1024
entries) are for one host: a lab of 50 peers on one bridge needs ~2 600 (each namespace
learns everyone it talks to). Past 1 024 the kernel drops packets ("neighbor table
overflow"): in the 50-member swarm lab most TCP connects between public peers timed out, and
it looked like a slow swarm. Raised while a lab runs, the old values put back after."""
_NEIGH = Path("/proc/sys/net/ipv4/neigh/default")
_neighbour_lock = threading.Lock()
_neighbour_users = 0
_neighbour_saved: dict[str, str] = {}


def _make_neighbour_room() -> None:
    global _neighbour_users
    with _neighbour_lock:
        _neighbour_users += 1
        if _neighbour_users > 1:
            return
        for name, value in NEIGHBOUR_ROOM.items():  # thresh3 first: 1 <= 2 <= 3 throughout
            path = _NEIGH / name
            try:
                old = path.read_text().strip()
                if int(old) < value:
                    path.write_text(str(value))
                    _neighbour_saved[name] = old
            except (OSError, ValueError):
                pass  # a read-only /proc/sys: small labs still fit the defaults


def _give_back_neighbour_room() -> None:
    global _neighbour_users
    with _neighbour_lock:
        _neighbour_users -= 1
        if _neighbour_users > 0:
            return
        for name in reversed(NEIGHBOUR_ROOM):  # thresh1 first, back below thresh2 and 3
            if name in _neighbour_saved:
                try:
                    (_NEIGH / name).write_text(_neighbour_saved.pop(name))
                except OSError:
                    pass


@dataclass
class Lab:
    prefix: str = field(default_factory=lambda: f"pd{secrets.token_hex(2)}")
    processes: list[RunnerPeer] = field(default_factory=list)
    others: list[subprocess.Popen[str]] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    _next_public: int = 1
    _next_lan: int = 1
    _room: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        _make_neighbour_room()
        self._room = True
        self.wan = self._ns("wan")
        _sh("ip", "-n", self.wan, "link", "add", "br0", "type", "bridge")
        _sh("ip", "-n", self.wan, "link", "set", "br0", "up")

    def _ns(self, role: str) -> str:
        name = f"{self.prefix}-{role}"
        _sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        _sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def _wan_port(self, ns: str, ifname: str) -> str:
        """Plug ``ns`` into the public bridge; returns its new public address."""
        ip = f"{PUBLIC_NET}.{self._next_public}"
        self._next_public += 1
        port = f"p{self._next_public}"
        _sh(
            "ip",
            "link",
            "add",
            ifname,
            "netns",
            ns,
            "type",
            "veth",
            "peer",
            port,
            "netns",
            self.wan,
        )
        _sh("ip", "-n", self.wan, "link", "set", port, "master", "br0", "up")
        _sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", ifname)
        _sh("ip", "-n", ns, "link", "set", ifname, "up")
        return ip

    def public(self, name: str) -> Node:
        ns = self._ns(name)
        return Node(ns, self._wan_port(ns, "eth0"), self)

    def behind_nat(self, name: str, *, random: bool = False) -> Node:
        """A peer on a LAN of its own behind a home router; returns the peer's node."""
        lan = self._next_lan
        self._next_lan += 1
        router = self._ns(f"{name}r")
        wan_ip = self._wan_port(router, "wan")
        host = self._ns(name)
        _sh(
            "ip",
            "link",
            "add",
            "lan",
            "netns",
            router,
            "type",
            "veth",
            "peer",
            "eth0",
            "netns",
            host,
        )
        _sh("ip", "-n", router, "addr", "add", f"10.77.{lan}.1/24", "dev", "lan")
        _sh("ip", "-n", router, "link", "set", "lan", "up")
        _sh("ip", "-n", host, "addr", "add", f"10.77.{lan}.2/24", "dev", "eth0")
        _sh("ip", "-n", host, "link", "set", "eth0", "up")
        _sh("ip", "-n", host, "route", "add", "default", "via", f"10.77.{lan}.1")
        node = Node(router, wan_ip, self)
        node.sh("sysctl", "-qw", "net.ipv4.ip_forward=1")
        masquerade = ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"]
        node.sh(*masquerade, *(["--random-fully"] if random else []))
        for chain in ("FORWARD", "INPUT"):
            node.sh(
                "iptables", "-A", chain, "-i", "wan", "-m", "conntrack",
                "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT",
            )  # fmt: skip
            node.sh("iptables", "-A", chain, "-i", "wan", "-j", "DROP")
        peer = Node(host, f"10.77.{lan}.2", self)
        peer.router_ip = wan_ip  # type: ignore[attr-defined]
        return peer

    def close(self) -> None:
        # Every peer is told to stop first, then each is waited for: one by one, a swarm's 50
        # peers took minutes (each leave is work for all the others still running).
        for runner in self.processes:
            runner.hang_up()
        for runner in self.processes:
            runner.close()
        for proc in self.others:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces.clear()
        if self._room:
            self._room = False
            _give_back_neighbour_room()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class RunnerPeer:
    """One peer process: requests are JSON lines with an id, answers and events come back.

    ``ready_timeout``: how long the process may take to print its ready line. 30 s covers one
    start on an idle box (~1 s of CPU importing py-libp2p, then the peer coming up); a lab
    that starts processes while many others run (tests/swarmlab.py) passes more."""

    READY_TIMEOUT = 30.0

    def __init__(self, proc: subprocess.Popen[str], ready_timeout: float = READY_TIMEOUT) -> None:
        self.proc = proc
        self._answers: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self._events_changed = threading.Condition()
        self._next = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.ready = self._wait_answer(0, ready_timeout)
        self.peer_id: str = self.ready["peerid"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "event" in msg:
                with self._events_changed:
                    self.events.append(msg)
                    self._events_changed.notify_all()
            else:
                self._box(int(msg.get("id", -1))).put(msg)

    def _box(self, rid: int) -> queue.Queue[dict[str, Any]]:
        with self._lock:
            return self._answers.setdefault(rid, queue.Queue())

    def _wait_answer(self, rid: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self._box(rid).get(timeout=0.2)
                break
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"runner exited ({self.proc.returncode})") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"runner gave no answer to request {rid}") from None
        if "error" in msg:
            raise RuntimeError(msg["error"])
        return msg["result"]

    def call(self, op: str, timeout: float = 20.0, **params: Any) -> Any:
        assert self.proc.stdin is not None
        self._next += 1
        rid = self._next
        self.proc.stdin.write(json.dumps({"id": rid, "op": op, **params}) + "\n")
        self.proc.stdin.flush()
        return self._wait_answer(rid, timeout)

    def wait_event(self, predicate: Any, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._events_changed:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the expected event did not come")
                self._events_changed.wait(left)

    def wait_info(self, predicate: Any, timeout: float = 20.0) -> dict[str, Any]:
        """Poll ``info`` until ``predicate(info)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.call("info")
            if predicate(info):
                return info
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met; last info: {json.dumps(info)[:2000]}")
            time.sleep(0.1)

    def hang_up(self) -> None:
        """EOF on the runner's stdin: it stops its peer and exits (``close`` waits for it)."""
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass  # it is exiting already

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.hang_up()
                self.proc.wait(timeout=8)
            except Exception:
                self.proc.kill()
                self.proc.wait(timeout=5)


def serve_stun(ip: str, port: int) -> None:
    """A minimal STUN server (binding requests only, answered from where they came): what
    ``miniupnpd`` asks before it maps ports on a WAN address in a reserved range (the lab's
    198.18.0.0/15), run as ``python -c`` inside a public node (``upnp_router``)."""
    import socket
    import struct

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ip, port))
    print("ready", flush=True)
    while True:
        data, (host, sport) = sock.recvfrom(2048)
        if len(data) < 20 or data[:2] != b"\x00\x01":
            continue
        mapped = struct.pack("!HHBBH4s", 0x0001, 8, 0, 1, sport, socket.inet_aton(host))
        sock.sendto(struct.pack("!HH", 0x0101, len(mapped)) + data[4:20] + mapped, (host, sport))


def upnp_router(lab: Lab, name: str, stun: Node, folder: Path, *, upnp: bool = True) -> Node:
    """A peer behind a home router (``Lab.behind_nat``) that also runs a real ``miniupnpd``
    (UPnP IGD and NAT-PMP on its LAN side, nftables rules in a table of its own). Its WAN
    address is in 198.18.0.0/15, which miniupnpd calls reserved and will not map on, unless
    STUN (a server in ``stun``, a public node) shows it is reachable: so the router asks
    ``serve_stun``. Forwarded (DNAT) connections pass the router's drop-unsolicited rule, as
    on a real router. ``upnp=False`` leaves only NAT-PMP on. Its files go in ``folder`` (the
    caller's temporary folder). Returns the peer's node once the gateway answers;
    ``node.router_ip`` is the WAN address."""
    if shutil.which("miniupnpd") is None or shutil.which("nft") is None:
        raise RuntimeError("the UPnP lab needs `miniupnpd` and `nft` (apt-get install miniupnpd)")
    peer = lab.behind_nat(name)
    router = Node(f"{lab.prefix}-{name}r", peer.router_ip, lab)  # type: ignore[attr-defined]
    if not getattr(stun, "stun_started", False):
        proc = stun.spawn(sys.executable, "-c", f"from tests.netlab import serve_stun; "
                          f"serve_stun({stun.ip!r}, 3478)")  # fmt: skip
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the lab's STUN server did not start")
        stun.stun_started = True  # type: ignore[attr-defined]
    router.sh("iptables", "-I", "FORWARD", "1", "-i", "wan", "-m", "conntrack",
              "--ctstate", "DNAT", "-j", "ACCEPT")  # fmt: skip
    (folder / "rules.nft").write_text(
        "table inet pdupnp {\n"
        "  chain forward { type filter hook forward priority 0; policy accept; jump mu; }\n"
        "  chain mu { }\n"
        "  chain pre { type nat hook prerouting priority -100; policy accept; jump mu_pre; }\n"
        "  chain mu_pre { }\n"
        "  chain post { type nat hook postrouting priority 100; policy accept; jump mu_post; }\n"
        "  chain mu_post { }\n"
        "}\n"
    )
    router.sh("nft", "-f", str(folder / "rules.nft"))
    (folder / "miniupnpd.conf").write_text(
        f"ext_ifname=wan\nlistening_ip=lan\nhttp_port=0\nenable_upnp={'yes' if upnp else 'no'}\n"
        "enable_natpmp=yes\n"
        f"ext_perform_stun=yes\next_stun_host={stun.ip}\next_stun_port=3478\n"
        "secure_mode=yes\nsystem_uptime=no\n"
        f"uuid=3d3cec3a-8cf0-11e0-98ee-{secrets.token_hex(6)}\n"
        "upnp_table_name=pdupnp\nupnp_nat_table_name=pdupnp\nupnp_forward_chain=mu\n"
        "upnp_nat_chain=mu_pre\nupnp_nat_postrouting_chain=mu_post\n"
        "allow 1024-65535 10.77.0.0/16 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n"
    )
    router.spawn("miniupnpd", "-d", "-f", str(folder / "miniupnpd.conf"),
                 "-P", str(folder / "miniupnpd.pid"))  # fmt: skip
    deadline = time.monotonic() + 15
    while (
        "miniupnpd"
        not in subprocess.run(
            ["ip", "netns", "exec", router.ns, "ss", "-lunp"], capture_output=True, text=True
        ).stdout
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("miniupnpd did not start in the lab router")
        time.sleep(0.1)
    return peer


def serve_hostile_igd(lan_ip: str, mode: str) -> None:
    """A UPnP gateway that misbehaves, for the port-mapping client's hostile-input tests (run
    as ``python -c`` in a router namespace, ``hostile_upnp_router``). It answers SSDP
    searches on ``lan_ip``; then, by ``mode``: ``mute`` accepts HTTP connections and never
    answers; ``garbage`` serves 1 MiB of random bytes as its description; ``private`` is a
    well-formed IGD whose external address is a private one (a NAT behind a NAT) and which
    accepts every mapping. It prints a line for each request it gets."""
    import http.server
    import socket
    import threading

    http_port = 5431
    ctl = "urn:schemas-upnp-org:service:WANIPConnection:1"
    description = (
        '<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0">'
        "<specVersion><major>1</major><minor>0</minor></specVersion><device>"
        "<deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>"
        "<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>"
        "<deviceList><device>"
        "<deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>"
        f"<serviceList><service><serviceType>{ctl}</serviceType>"
        "<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>"
        "<controlURL>/ctl</controlURL><eventSubURL>/evt</eventSubURL><SCPDURL>/scpd.xml</SCPDURL>"
        "</service></serviceList></device></deviceList></device></deviceList></device></root>"
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self, body: bytes, ctype: str = 'text/xml; charset="utf-8"') -> None:
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            print("get", self.path, flush=True)
            if mode == "mute":
                threading.Event().wait()
            if mode == "garbage":
                self._send(os.urandom(1 << 20), "application/octet-stream")
                return
            self._send(description.encode() if self.path == "/rootDesc.xml" else b"")

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            action = (self.headers.get("SOAPAction") or "").strip('"').split("#")[-1]
            print("post", action, flush=True)
            inner = "<NewExternalIPAddress>10.99.0.1</NewExternalIPAddress>" * (
                action == "GetExternalIPAddress"
            )
            if action == "GetStatusInfo":
                inner = "<NewConnectionStatus>Connected</NewConnectionStatus>"
            self._send(
                '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/'
                'envelope/"><s:Body>'
                f'<u:{action}Response xmlns:u="{ctl}">{inner}</u:{action}Response>'
                "</s:Body></s:Envelope>".encode()
            )

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((lan_ip, http_port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ssdp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ssdp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ssdp.bind(("", 1900))
    group = socket.inet_aton("239.255.255.250") + socket.inet_aton(lan_ip)
    ssdp.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group)
    print("ready", flush=True)
    while True:
        data, sender = ssdp.recvfrom(4096)
        if b"M-SEARCH" not in data:
            continue
        print("searched", flush=True)
        ssdp.sendto(
            b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\n"
            b"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
            b"USN: uuid:00000000-0000-0000-0000-000000000001::"
            b"urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\n"
            + f"LOCATION: http://{lan_ip}:{http_port}/rootDesc.xml\r\n\r\n".encode(),
            sender,
        )


def hostile_upnp_router(lab: Lab, name: str, mode: str) -> Node:
    """A peer behind a home router whose UPnP gateway misbehaves (``serve_hostile_igd``);
    ``node.igd`` is the gateway's process (its stdout: one line per request)."""
    peer = lab.behind_nat(name)
    router = Node(f"{lab.prefix}-{name}r", peer.router_ip, lab)  # type: ignore[attr-defined]
    lan_ip = peer.ip.rsplit(".", 1)[0] + ".1"
    proc = router.spawn(sys.executable, "-c", f"from tests.netlab import serve_hostile_igd; "
                        f"serve_hostile_igd({lan_ip!r}, {mode!r})")  # fmt: skip
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("the hostile gateway did not start")
    peer.igd = proc  # type: ignore[attr-defined]
    return peer
