"""User settings, kept as TOML in the profile so people can read and edit them by hand."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

log = logging.getLogger(__name__)

# The public IPFS bootstrap peers, as kubo and go-libp2p-kad-dht ship them.
DEFAULT_BOOTSTRAP = [
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmQCU2EcMqAqQPR2i9bChDtGNJchTbq5TbXJJ16u19uLTa",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmbLHAnMoJPWSCR5Zhtx6BHJX9KiKNN6tpvbUcqanj75Nb",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmcZf59bWwK5XFi76CZX8cbJ4BhTzzA3gU1ZjYZcYW3dwt",
    "/ip4/104.131.131.82/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ",
]


@dataclass
class Settings:
    listen_port: int = 0
    """TCP port on every interface, and the same UDP port for QUIC. 0: the desktop app picks
    a port free for both on its first start and keeps it (``Profile.listen_addrs_for_start``),
    so the addresses you shared stay good."""
    quic: bool = True
    """Listen on QUIC (``/udp/<listen_port>/quic-v1``) beside TCP. Peers that offer both are
    dialled over TCP first (faster in py-libp2p), QUIC when TCP does not get through."""
    listen_addrs: list[str] = field(default_factory=list)
    """Explicit listen multiaddrs; when set they replace ``listen_port`` and ``quic``."""
    bootstrap: list[str] = field(default_factory=lambda: list(DEFAULT_BOOTSTRAP))
    mdns: bool = True
    relays: list[str] = field(
        default_factory=list
    )  # static circuit relays (core/network/nat/relay.py)
    file_update_topic: str = ""
    conn_low_water: int = 100
    conn_high_water: int = 400
    notifications: bool = True
    close_to_tray: bool = False
    """Closing the desktop window hides it in the tray (File → Quit ends the app)."""
    download_dir: str = ""
    """Where the desktop's save dialogs start; "" is ~/Downloads (or the home folder)."""
    relay_service: bool = False
    """The desktop peer serves as a circuit relay v2 for others (``serve --relay-service``)."""
    port_mapping: bool = True
    """Ask the router to forward the listen port (UPnP), so others can dial us directly."""
    display_name: str = ""
    """The name other Peerdesk users see for this peer (core/network/profile_name.py)."""

    def effective_listen_addrs(self) -> list[str]:
        """TCP, and QUIC on the same port number (a taken UDP port moves QUIC to another one:
        ``libp2p_compat/quic.py``; a peer whose QUIC cannot listen at all runs on TCP)."""
        if self.listen_addrs:
            return list(self.listen_addrs)
        tcp = f"/ip4/0.0.0.0/tcp/{self.listen_port}"
        return [tcp, f"/ip4/0.0.0.0/udp/{self.listen_port}/quic-v1"] if self.quic else [tcp]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        """Unknown keys are ignored and wrong types fall back to defaults: a hand-edited file
        must never keep the app from starting."""
        defaults = cls()
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            value, default = data[f.name], getattr(defaults, f.name)
            if isinstance(default, bool) != isinstance(value, bool) or not isinstance(
                value, type(default)
            ):
                log.warning(
                    "settings: ignoring %s=%r (expected %s)", f.name, value, type(default).__name__
                )
                continue
            if isinstance(default, list):
                value = [str(v) for v in value]
            values[f.name] = value
        return cls(**values)


def load(path: Path) -> Settings:
    try:
        with path.open("rb") as fh:
            return Settings.from_dict(tomllib.load(fh))
    except FileNotFoundError:
        return Settings()
    except (tomllib.TOMLDecodeError, OSError) as exc:
        log.error("settings file %s is unreadable (%s); using defaults", path, exc)
        return Settings()


def save(settings: Settings, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        tomli_w.dump(dataclasses.asdict(settings), fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def port_is_free(port: int) -> bool:
    """Whether a TCP listener could take ``port`` on every interface now. SO_REUSEADDR as the
    peer's own listener sets it, so our own port lingering in TIME_WAIT after a restart does
    not count as taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def pick_free_port(tries: int = 20) -> int:
    """A port the system considers free right now for TCP and for UDP (QUIC takes the same
    number): an unused ephemeral TCP port whose UDP twin nobody holds either."""
    port = 0
    for _ in range(tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("0.0.0.0", 0))
            port = int(sock.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
        return port
    return port  # UDP twins all taken: QUIC will listen on another port
