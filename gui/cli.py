"""The ``peerdesk`` command: the desktop app, or ``peerdesk serve`` headless. Imports nothing
from Qt until a window is really wanted, so ``serve`` runs on machines without a display."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from core import __version__


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--data-dir", type=Path, default=default, help="profile folder (default: per-user app data)"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if top else argparse.SUPPRESS,
        help="more logging (-vv includes py-libp2p's own)",
    )


def _app_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="peerdesk",
        description="A desktop libp2p peer. 'peerdesk serve --help' for the "
        "headless mode with p2p-webapp's WebSocket API.",
    )
    parser.add_argument("--version", action="version", version=f"peerdesk {__version__}")
    _common(parser, top=True)
    parser.add_argument(
        "link", nargs="?", default="", help="an ipfs:// or /ipfs/ link to open in the Files pane"
    )
    parser.add_argument(
        "--no-bootstrap", action="store_true", help="do not join the public DHT (this run)"
    )
    parser.add_argument("--no-mdns", action="store_true", help="no LAN discovery (this run)")
    return parser


def _serve_parser() -> argparse.ArgumentParser:
    serve = argparse.ArgumentParser(
        prog="peerdesk serve", description="Run headless with p2p-webapp's WebSocket API."
    )
    _common(serve, top=False)
    serve.add_argument("--ws-port", type=int, default=0, help="WebSocket port (0 = any free)")
    serve.add_argument(
        "--listen",
        action="append",
        default=[],
        metavar="MULTIADDR",
        help="libp2p listen address (repeatable)",
    )
    serve.add_argument(
        "--bootstrap",
        action="append",
        default=[],
        metavar="MULTIADDR",
        help="DHT bootstrap peer (repeatable; replaces the configured list)",
    )
    serve.add_argument("--no-bootstrap", action="store_true", help="do not join the public DHT")
    serve.add_argument("--no-mdns", action="store_true", help="no LAN discovery")
    serve.add_argument(
        "--www",
        type=Path,
        metavar="DIR",
        help="serve a p2p-webapp web app's files on the same port",
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web page origin (http://host:port) allowed to use the API (repeatable)",
    )
    serve.add_argument(
        "--relay",
        action="append",
        default=[],
        metavar="MULTIADDR",
        help="a circuit relay v2 to reserve on while not public (repeatable; replaces the setting)",
    )
    serve.add_argument(
        "--relay-service",
        action="store_true",
        help="relay for other peers (circuit relay v2, with go-libp2p's limits)",
    )
    return serve


def parse(argv: list[str]) -> argparse.Namespace:
    """Global options may come before ``serve``; anything else is the app with a link."""
    if "serve" in argv:
        at = argv.index("serve")
        top = _app_parser().parse_args(argv[:at])
        args = _serve_parser().parse_args(argv[at + 1 :], namespace=top)
        args.command = "serve"
        return args
    args = _app_parser().parse_args(argv)
    args.command = ""
    return args


def setup_logging(verbosity: int) -> None:
    from core.libp2p_compat import quiet_library_logging

    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    quiet_library_logging(logging.DEBUG if verbosity >= 3 else None)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    setup_logging(args.verbose)
    if args.command == "serve":
        from core.server.serve import ServeOptions, run

        return run(
            ServeOptions(
                data_dir=args.data_dir,
                ws_port=args.ws_port,
                listen=args.listen,
                bootstrap=args.bootstrap,
                no_bootstrap=args.no_bootstrap,
                no_mdns=args.no_mdns,
                www=args.www,
                allow_origin=args.allow_origin,
                relay=args.relay,
                relay_service=args.relay_service,
            )
        )
    from gui.app import main as gui_main

    return gui_main(args.data_dir, args.link, no_bootstrap=args.no_bootstrap, no_mdns=args.no_mdns)


if __name__ == "__main__":
    sys.exit(main())
