"""The profile folder: everything that makes this peer *this* peer across restarts."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from libp2p.crypto.keys import KeyPair

from core.profile import identity, settings
from core.profile.location import default_data_dir

log = logging.getLogger(__name__)


@dataclass
class Profile:
    root: Path

    @classmethod
    def open(cls, root: Path | None = None) -> Profile:
        root = Path(root) if root else default_data_dir()
        root.mkdir(parents=True, exist_ok=True)
        try:
            os.chmod(root, 0o700)
        except OSError:
            pass
        return cls(root)

    @property
    def key_path(self) -> Path:
        return self.root / "identity.key"

    @property
    def settings_path(self) -> Path:
        return self.root / "settings.toml"

    @property
    def contacts_path(self) -> Path:
        return self.root / "contacts.json"

    def key_pair(self) -> KeyPair:
        return identity.load_or_create(self.key_path)

    def replace_identity(self, key_pair: KeyPair) -> None:
        identity.save(key_pair, self.key_path)

    def load_settings(self) -> settings.Settings:
        return settings.load(self.settings_path)

    def save_settings(self, value: settings.Settings) -> None:
        settings.save(value, self.settings_path)

    def listen_addrs_for_start(self, value: settings.Settings) -> tuple[list[str], str]:
        """The listen addresses for this start, and a notice for the user ("" if none).

        A profile whose port is 0 gets a free port now, saved in its settings, so the
        multiaddr (and the QR code) given to others stays valid across restarts. When the
        kept port is taken by another program this start falls back to any free port (TCP,
        and QUIC when it is on) and says so; the setting is left alone, so the next start
        tries the kept port again."""
        if value.listen_addrs:
            return list(value.listen_addrs), ""
        if value.listen_port == 0:
            value.listen_port = settings.pick_free_port()
            try:
                self.save_settings(value)
            except OSError as exc:
                log.error("could not save the chosen listen port: %s", exc)
            return value.effective_listen_addrs(), ""
        if settings.port_is_free(value.listen_port):
            return value.effective_listen_addrs(), ""
        notice = (
            f"Listen port {value.listen_port} is taken by another program; "
            "using another port for now (your shared address will not work until it is free)"
        )
        log.warning("%s", notice)
        # Any free port, on every transport the user chose (QUIC too unless switched off).
        return settings.Settings(listen_port=0, quic=value.quic).effective_listen_addrs(), notice

    def load_contacts(self) -> dict[str, list[str]]:
        """Peer id → known multiaddrs."""
        try:
            data = json.loads(self.contacts_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error(
                "contacts file %s is unreadable (%s); starting with none", self.contacts_path, exc
            )
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): [str(a) for a in v] for k, v in data.items() if isinstance(v, list)}

    def save_contacts(self, contacts: dict[str, list[str]]) -> None:
        tmp = self.contacts_path.with_name("contacts.json.tmp")
        tmp.write_text(json.dumps(contacts, indent=2, sort_keys=True))
        os.replace(tmp, self.contacts_path)
