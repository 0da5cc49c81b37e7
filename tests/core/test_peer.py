"""The peer as a whole: info for the GUI's peers pane, events, robustness against garbage on the
libp2p protocols it serves, and a clean shutdown."""

from __future__ import annotations

import trio

from core.events import PeerConnected, PeerDisconnected
from core.profile.folder import Profile
from core.profile.settings import Settings
from core.server.serve import ServeOptions, peer_config
from tests.conftest import connect, fast_config, peer_group


async def test_info_lists_connections_with_latency_direction_and_protocols() -> None:
    async with peer_group(2) as [(a, ra), (b, rb)]:
        b.start_protocol("/chat/1.0.0")
        await connect(a, b)
        await ra.wait_for(lambda: ra.of(PeerConnected))
        assert ra.of(PeerConnected)[0].direction == "outbound"
        await rb.wait_for(lambda: rb.of(PeerConnected))
        assert rb.of(PeerConnected)[0].direction == "inbound"
        with trio.fail_after(10):
            while True:
                info = a.info()
                conn = info["connections"][0] if info["connections"] else {}
                if conn.get("latency_ms") is not None and "/chat/1.0.0" in conn["protocols"]:
                    break
                await trio.sleep(0.1)
        assert info["peerid"] == str(a.peer_id)
        assert all(addr.startswith("/ip4/127.0.0.1/tcp/") for addr in info["addrs"])
        assert conn["peer"] == str(b.peer_id) and conn["direction"] == "outbound"
        assert conn["addrs"] and conn["contact"] is False
        assert "/meshsub/1.1.0" in conn["protocols"]
        await a.host.disconnect(b.peer_id)
        await rb.wait_for(lambda: rb.of(PeerDisconnected))
        assert b.info()["connections"] == []


async def test_garbage_on_library_protocols_does_not_hurt_the_peer() -> None:
    async with peer_group(2) as [(a, _), (b, rb)]:
        b.start_protocol("/chat/1.0.0")
        await connect(a, b)
        for proto in [
            "/meshsub/1.1.0",
            "/ipfs/kad/1.0.0",
            "/ipfs/id/push/1.0.0",
            "/ipfs/ping/1.0.0",
        ]:
            stream = await a.host.new_stream(b.peer_id, [proto])
            await stream.write(b"\xff\xff\xff\xff\x0f" + b"\x00garbage" * 64)
            await stream.close()
        await trio.sleep(0.5)
        await a.send(str(b.peer_id), "/chat/1.0.0", "still fine")
        await a.subscribe("after-garbage")
        await b.subscribe("after-garbage")
        await a.publish("after-garbage", 1)
        from core.events import TopicData

        await rb.wait_for(lambda: rb.of(TopicData))


async def test_peer_connect_refuses_bad_addresses() -> None:
    import pytest

    async with peer_group(1) as [(a, _)]:
        for bad in ["", "garbage", "/ip4/127.0.0.1/tcp/1", a.listen_addrs()[0]]:
            with pytest.raises(ValueError):
                await a.connect(bad)
        with pytest.raises(ConnectionError):
            await a.connect(
                "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
            )


def test_serve_options_override_profile_settings(tmp_path) -> None:
    profile = Profile.open(tmp_path)
    profile.save_settings(Settings(listen_port=4444, mdns=True, file_update_topic="files"))
    cfg = peer_config(profile, ServeOptions())
    assert cfg.listen_addrs == ["/ip4/0.0.0.0/tcp/4444", "/ip4/0.0.0.0/udp/4444/quic-v1"]
    assert cfg.mdns
    assert cfg.file_update_topic == "files" and cfg.bootstrap == Settings().bootstrap
    cfg = peer_config(
        profile, ServeOptions(listen=["/ip4/127.0.0.1/tcp/0"], no_mdns=True, no_bootstrap=True)
    )
    assert cfg.listen_addrs == ["/ip4/127.0.0.1/tcp/0"] and not cfg.mdns and cfg.bootstrap == []
    cfg = peer_config(profile, ServeOptions(bootstrap=["/ip4/127.0.0.1/tcp/1/p2p/x"]))
    assert cfg.bootstrap == ["/ip4/127.0.0.1/tcp/1/p2p/x"]


def test_relays_come_from_the_settings_unless_the_command_line_names_some(tmp_path) -> None:
    profile = Profile.open(tmp_path)
    configured = "/ip4/198.18.0.1/tcp/4001/p2p/12D3KooWL3BPBarfXFnpCeUHgWF2eEVVGmsWiaPXNmp13bttobrt"
    profile.save_settings(Settings(relays=[configured]))
    cfg = peer_config(profile, ServeOptions())
    assert cfg.relays == [configured] and not cfg.relay_service
    cfg = peer_config(profile, ServeOptions(relay=["/ip4/1.2.3.4/tcp/1/p2p/x"], relay_service=True))
    assert cfg.relays == ["/ip4/1.2.3.4/tcp/1/p2p/x"] and cfg.relay_service


async def test_info_reports_reachability_relay_addresses_and_connection_kinds() -> None:
    async with peer_group(2) as [(a, _), (b, _)]:
        await connect(a, b)
        info = a.info()
        assert info["reachability"] == "unknown" and info["relay_addrs"] == []
        (conn,) = info["connections"]
        assert conn["kind"] == "direct"
        assert [link["kind"] for link in conn["links"]] == ["direct"]
        assert conn["links"][0]["direction"] == conn["direction"] == "outbound"


async def test_latency_comes_from_the_muxer_over_tcp_and_quic_without_pings() -> None:
    """A ping per peer every 15 s was a third of an idle swarm member's CPU; Yamux and QUIC
    measure the round trip themselves."""
    from libp2p.host import ping as lib_ping

    both = ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"]
    async with peer_group(3, config=lambda: fast_config(listen_addrs=list(both))) as peers:
        (a, _), (b, _), (c, _) = peers
        pings: list[str] = []
        for peer in (b, c):

            async def _counting(stream, name=str(peer.peer_id)) -> None:  # type: ignore[no-untyped-def]
                pings.append(name)
                await lib_ping.handle_ping(stream)

            peer.host.set_stream_handler(lib_ping.ID, _counting)
        await a.connect(next(x for x in b.listen_addrs() if "/tcp/" in x))
        await a.connect(next(x for x in c.listen_addrs() if "/quic-v1" in x))
        with trio.fail_after(10):
            while True:
                latency = {x["peer"]: x["latency_ms"] for x in a.info()["connections"]}
                if len(latency) == 2 and None not in latency.values():
                    break
                await trio.sleep(0.1)
        assert all(0 < ms < 5000 for ms in latency.values()), latency
        assert pings == []
