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
    assert s.effective_listen_addrs() == ["/ip4/0.0.0.0/tcp/0"]
    assert Settings(listen_addrs=["/ip4/127.0.0.1/tcp/5"]).effective_listen_addrs() == [
        "/ip4/127.0.0.1/tcp/5"
    ]


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
    assert port > 0 and notice == "" and addrs == [f"/ip4/0.0.0.0/tcp/{port}"]
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
        assert addrs == ["/ip4/0.0.0.0/tcp/0"] and str(port) in notice
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
