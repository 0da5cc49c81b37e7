"""ipfs:// links and the command line."""

from __future__ import annotations

import pytest

from gui.cli import parse
from gui.links import LinkError, parse_link

CID = "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby"


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        (f"ipfs://{CID}", ("ipfs", CID, "")),
        (f"ipfs://{CID}/docs/a.txt", ("ipfs", CID, "docs/a.txt")),
        (f"/ipfs/{CID}", ("ipfs", CID, "")),
        ("ipns://example.org", ("ipns", "example.org", "")),
        (f"  /ipfs/{CID}/  ", ("ipfs", CID, "")),
    ],
)
def test_parse_link(link: str, expected: tuple[str, str, str]) -> None:
    assert parse_link(link) == expected


@pytest.mark.parametrize("bad", ["", "http://x", "ipfs://", "/ipfs/", "bafy…"])
def test_bad_links_are_refused(bad: str) -> None:
    with pytest.raises(LinkError):
        parse_link(bad)


def test_command_line_forms() -> None:
    args = parse(["--data-dir", "/p", "serve", "--ws-port", "5", "--no-mdns", "-vv"])
    assert (args.command, str(args.data_dir), args.ws_port, args.no_mdns, args.verbose) == (
        "serve",
        "/p",
        5,
        True,
        2,
    )
    assert parse(["serve", "--data-dir", "/q"]).data_dir.as_posix() == "/q"
    gui = parse([f"ipfs://{CID}"])
    assert (gui.command, gui.link) == ("", f"ipfs://{CID}")
    assert parse([]).link == ""
    with pytest.raises(SystemExit):
        parse(["serve", "--ws-port", "not-a-number"])
