"""Settings and contacts in the profile folder survive restarts and hand edits."""

from __future__ import annotations

from core.profile.folder import Profile
from core.profile.settings import DEFAULT_BOOTSTRAP, Settings


def test_settings_round_trip(tmp_path) -> None:
    profile = Profile.open(tmp_path)
    assert profile.load_settings() == Settings()
    s = Settings(
        listen_port=4321,
        bootstrap=["/ip4/127.0.0.1/tcp/1/p2p/x"],
        mdns=False,
        file_update_topic="files",
    )
    profile.save_settings(s)
    assert Profile.open(tmp_path).load_settings() == s
    assert "listen_port = 4321" in profile.settings_path.read_text()


def test_defaults_use_public_bootstrap_and_all_interfaces() -> None:
    s = Settings()
    assert s.bootstrap == DEFAULT_BOOTSTRAP
    assert s.effective_listen_addrs() == ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"]
    assert Settings(listen_addrs=["/ip4/127.0.0.1/tcp/5"]).effective_listen_addrs() == [
        "/ip4/127.0.0.1/tcp/5"
    ]


def test_quic_takes_the_tcp_port_number_and_can_be_switched_off() -> None:
    assert Settings(listen_port=4001).effective_listen_addrs() == [
        "/ip4/0.0.0.0/tcp/4001",
        "/ip4/0.0.0.0/udp/4001/quic-v1",
    ]
    assert Settings(listen_port=4001, quic=False).effective_listen_addrs() == [
        "/ip4/0.0.0.0/tcp/4001"
    ]


def test_a_picked_port_is_free_for_udp_too(monkeypatch) -> None:
    import socket

    from core.profile import settings

    # The first ephemeral TCP port handed out has its UDP twin taken: it is passed over.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("0.0.0.0", 0))
        taken = held.getsockname()[1]
        real_socket = socket.socket
        handed: list[int] = []

        class FirstTaken(real_socket):  # type: ignore[misc, valid-type]
            def bind(self, address: tuple[str, int]) -> None:
                if self.type == socket.SOCK_STREAM and address[1] == 0 and not handed:
                    handed.append(taken)
                    address = (address[0], taken)
                super().bind(address)

        monkeypatch.setattr(settings.socket, "socket", FirstTaken)
        port = settings.pick_free_port()
    assert handed == [taken] and port != taken and port > 0


def test_broken_or_mistyped_settings_fall_back_to_defaults(tmp_path) -> None:
    profile = Profile.open(tmp_path)
    profile.settings_path.write_text("this is = = not toml")
    assert profile.load_settings() == Settings()
    profile.settings_path.write_text(
        'listen_port = "high"\nmdns = 1\nunknown = 3\nfile_update_topic = "t"\n'
    )
    loaded = profile.load_settings()
    assert loaded.listen_port == 0 and loaded.mdns is True and loaded.file_update_topic == "t"


def test_contacts_file_round_trip_and_corruption(tmp_path) -> None:
    profile = Profile.open(tmp_path)
    assert profile.load_contacts() == {}
    profile.save_contacts({"12D3KooWabc": ["/ip4/127.0.0.1/tcp/1"]})
    assert profile.load_contacts() == {"12D3KooWabc": ["/ip4/127.0.0.1/tcp/1"]}
    profile.contacts_path.write_text("{broken")
    assert profile.load_contacts() == {}


def test_listen_port_is_picked_once_and_kept(tmp_path) -> None:
    profile = Profile.open(tmp_path)
    addrs, notice = profile.listen_addrs_for_start(profile.load_settings())
    port = profile.load_settings().listen_port
    assert port > 0 and notice == ""
    assert addrs == [f"/ip4/0.0.0.0/tcp/{port}", f"/ip4/0.0.0.0/udp/{port}/quic-v1"]
    again, notice = Profile.open(tmp_path).listen_addrs_for_start(profile.load_settings())
    assert again == addrs and notice == ""


def test_a_taken_port_falls_back_with_a_notice_and_is_kept(tmp_path) -> None:
    import socket

    profile = Profile.open(tmp_path)
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        profile.save_settings(Settings(listen_port=port))
        addrs, notice = profile.listen_addrs_for_start(profile.load_settings())
        assert addrs == ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"]  # QUIC kept
        assert str(port) in notice
    assert profile.load_settings().listen_port == port  # tried again next time


def test_explicit_listen_addrs_are_used_as_they_are(tmp_path) -> None:
    profile = Profile.open(tmp_path)
    s = Settings(listen_addrs=["/ip4/127.0.0.1/tcp/0"])
    assert profile.listen_addrs_for_start(s) == (["/ip4/127.0.0.1/tcp/0"], "")
    assert not profile.settings_path.exists()


def test_close_to_tray_is_off_by_default_and_kept(tmp_path) -> None:
    profile = Profile.open(tmp_path)
    assert profile.load_settings().close_to_tray is False
    profile.save_settings(Settings(close_to_tray=True))
    assert Profile.open(tmp_path).load_settings().close_to_tray is True
