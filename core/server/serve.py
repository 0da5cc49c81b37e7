"""``peerdesk serve``: the core without a window, driving p2p-webapp web apps over WebSocket."""

from __future__ import annotations

import json
import logging
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import trio

from core import __version__
from core.peer import PeerConfig
from core.profile.folder import Profile
from core.server.manager import PeerManager
from core.server.wsapi import WsApi

log = logging.getLogger(__name__)


@dataclass
class ServeOptions:
    data_dir: Path | None = None
    ws_port: int = 0
    listen: list[str] = field(default_factory=list)
    bootstrap: list[str] = field(default_factory=list)
    no_bootstrap: bool = False
    no_mdns: bool = False
    www: Path | None = None
    """A p2p-webapp web app's folder, served on the API's port."""
    relay: list[str] = field(default_factory=list)
    """Static relays; replace the ``relays`` setting (core/network/nat/relay.py)."""
    relay_service: bool = False
    allow_origin: list[str] = field(default_factory=list)
    """Browser origins (``http://host:port``) allowed on the API besides the ``--www`` one."""


def peer_config(profile: Profile, options: ServeOptions) -> PeerConfig:
    """Settings from the profile, overridden by what the command line says."""
    settings = profile.load_settings()
    return PeerConfig.from_settings(
        settings,
        profile.root,
        listen_addrs=list(options.listen) or settings.effective_listen_addrs(),
        bootstrap=[] if options.no_bootstrap else list(options.bootstrap) or None,
        mdns=not options.no_mdns,
        relays=list(options.relay) or None,
        relay_service=options.relay_service,
    )


async def serve(options: ServeOptions) -> None:
    profile = Profile.open(options.data_dir)
    manager = PeerManager(peer_config(profile, options))
    api = WsApi(manager, options.allow_origin)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            port = await nursery.start(api.serve, "127.0.0.1", options.ws_port, options.www)
            ready = {
                "event": "ready",
                "ws": f"ws://127.0.0.1:{port}/ws",
                "version": __version__,
                "data_dir": str(profile.root),
            }
            if options.www is not None:
                ready["app"] = f"http://127.0.0.1:{port}/"
            print(json.dumps(ready), flush=True)
            async for signum in signals:
                log.info("received %s; shutting down", signal.Signals(signum).name)
                break
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await manager.close()
            nursery.cancel_scope.cancel()
    print(json.dumps({"event": "stopped"}), flush=True)


def run(options: ServeOptions) -> int:
    try:
        trio.run(serve, options)
    except OSError as exc:
        print(f"peerdesk serve: {exc}", file=sys.stderr)
        return 1
    return 0
