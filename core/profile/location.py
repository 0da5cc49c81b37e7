"""Where a profile lives when none is named: the platform's per-user data folder.

Its own module, importing nothing but platformdirs, so the desktop can find its profile (and
forward a link to a running instance) before py-libp2p is imported behind the window."""

from __future__ import annotations

from pathlib import Path

import platformdirs

APP_NAME = "Peerdesk"


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
