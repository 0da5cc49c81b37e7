"""A peer whose py-libp2p service dies says so and stops; it never runs on as a zombie."""

from __future__ import annotations

import trio

from core.events import PeerFailed
from tests.conftest import peer_group
from tests.core.server.test_wsapi import api_server, client


async def test_a_stopped_service_fails_the_peer_visibly() -> None:
    async with peer_group(1) as [(peer, rec)]:
        await peer.pubsub.manager.stop()
        failed = await rec.wait_for(lambda: rec.of(PeerFailed), timeout=5)
        assert "pubsub" in failed[0].error
        with trio.fail_after(5):
            await peer.stopped.wait()
        assert not peer.running


async def test_the_web_app_hears_of_it_and_may_ask_for_a_new_peer() -> None:
    async with api_server() as (url, manager), client(url) as app:
        first = (await app.call("peer", {}))["result"]["peerid"]
        await manager.peers[first].pubsub.manager.stop()
        push = await app.push("peerFailed", timeout=5)
        assert "pubsub" in push["params"]["error"]
        assert (await app.call("info"))["error"]  # no peer on this connection any more
        second = (await app.call("peer", {}))["result"]["peerid"]
        assert second != first and manager.peers[second].running
