"""Profile.listen_addrs_for_start when the kept port is taken: the fallback start keeps the
transports the user chose (QUIC beside TCP unless switched off), on any free port."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from core.profile.folder import Profile
from core.profile.settings import Settings


@pytest.mark.parametrize(
    ("quic", "expected"),
    [
        (True, ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"]),
        (False, ["/ip4/0.0.0.0/tcp/0"]),
    ],
)
def test_a_taken_port_falls_back_with_the_chosen_transports(
    tmp_path: Path, quic: bool, expected: list[str]
) -> None:
    profile = Profile.open(tmp_path)
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        profile.save_settings(Settings(listen_port=port, quic=quic))
        addrs, notice = profile.listen_addrs_for_start(profile.load_settings())
    assert addrs == expected
    assert f"Listen port {port} is taken" in notice
    kept = profile.load_settings()
    assert (kept.listen_port, kept.quic) == (port, quic)  # the next start tries them again
