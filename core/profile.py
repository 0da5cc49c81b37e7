"""The profile folder: everything that makes this peer *this* peer across restarts."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from libp2p.crypto.keys import KeyPair

from . import identity, settings

log = logging.getLogger(__name__)

APP_NAME = "Peerdesk"


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


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
