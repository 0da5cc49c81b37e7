"""Contacts: protect + tag, redial after a disconnect, persistence, bad entries."""

from __future__ import annotations

import trio

from core.events import PeerConnected
from core.network.contacts import TAG, TAG_VALUE, parse_contact
from core.peer import new_peer
from tests.conftest import Recorder, fast_config, peer_group


def test_parse_contact_forms() -> None:
    pid = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
    assert str(parse_contact(pid).peer) == pid
    parsed = parse_contact(f"/ip4/127.0.0.1/tcp/4001/p2p/{pid}")
    assert str(parsed.peer) == pid and [str(a) for a in parsed.addrs] == ["/ip4/127.0.0.1/tcp/4001"]


async def test_contact_is_protected_tagged_and_redialled_after_disconnect() -> None:
    saved: dict[str, list[str]] = {}
    async with peer_group(1) as [(b, _)]:
        rec = Recorder()
        async with trio.open_nursery() as nursery:
            a = await nursery.start(
                new_peer(
                    fast_config(), rec, save_contacts=lambda c: (saved.clear(), saved.update(c))
                ).run
            )
            errors = a.add_peers([b.listen_addrs()[0], "not-a-peer", str(a.peer_id)])
            assert set(errors) == {"not-a-peer", str(a.peer_id)}
            await rec.wait_for(lambda: any(e.peer == str(b.peer_id) for e in rec.of(PeerConnected)))
            net = a.host.get_network()
            assert net.is_protected(b.peer_id, TAG)
            assert net.tag_store.get_tag(b.peer_id, TAG) == TAG_VALUE
            assert str(b.peer_id) in saved

            await a.host.disconnect(b.peer_id)
            await rec.wait_for(
                lambda: len([e for e in rec.of(PeerConnected) if e.peer == str(b.peer_id)]) >= 2,
                timeout=10,
            )

            a.remove_peers([str(b.peer_id)])
            assert not net.is_protected(b.peer_id, TAG)
            assert net.tag_store.get_tag(b.peer_id, TAG) == 0
            assert b.peer_id in a.host.get_connected_peers()  # removing never disconnects
            assert str(b.peer_id) not in saved and a.contacts.snapshot() == {}
            a.stop()


async def test_saved_contacts_are_dialled_on_start() -> None:
    async with peer_group(1) as [(b, _)]:
        rec = Recorder()
        saved = {str(b.peer_id): [b.listen_addrs()[0].split("/p2p/")[0]]}
        async with trio.open_nursery() as nursery:
            a = await nursery.start(new_peer(fast_config(), rec, contacts=saved).run)
            await rec.wait_for(lambda: rec.of(PeerConnected))
            assert a.host.get_network().is_protected(b.peer_id, TAG)
            a.stop()


async def test_over_the_high_watermark_contacts_are_kept_and_others_pruned() -> None:
    from tests.conftest import connect

    def hub_config():
        return fast_config(low_water=1, high_water=2, grace_period=0.0)

    async with peer_group(1, config=hub_config) as [(hub, _)], peer_group(4) as others:
        contact = others[0][0]
        hub.add_peers([str(contact.peer_id)])
        for other, _ in others:
            await connect(other, hub)
            await trio.sleep(0.2)  # the pruner runs when a connection arrives
        with trio.fail_after(10):
            while len(hub.host.get_connected_peers()) > 2:
                await trio.sleep(0.1)
        assert contact.peer_id in hub.host.get_connected_peers()


async def test_a_contact_added_by_id_is_saved_with_its_addresses_and_found_after_restart() -> None:
    saved: dict[str, list[str]] = {}
    async with peer_group(1) as [(b, _)]:
        b_addr = b.listen_addrs()[0].split("/p2p/")[0]
        rec = Recorder()
        async with trio.open_nursery() as nursery:
            a = await nursery.start(
                new_peer(
                    fast_config(), rec, save_contacts=lambda c: (saved.clear(), saved.update(c))
                ).run
            )
            await a.connect(b.listen_addrs()[0])
            a.add_peers([str(b.peer_id)])  # by id alone: no address given
            await rec.wait_for(lambda: b_addr in saved.get(str(b.peer_id), []), timeout=10)
            a.stop()
        # a new peer from only what was saved connects without a DHT
        rec2 = Recorder()
        async with trio.open_nursery() as nursery:
            c = await nursery.start(new_peer(fast_config(), rec2, contacts=dict(saved)).run)
            await rec2.wait_for(
                lambda: any(e.peer == str(b.peer_id) for e in rec2.of(PeerConnected)), timeout=10
            )
            c.stop()
