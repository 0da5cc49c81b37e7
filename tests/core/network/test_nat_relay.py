"""core/network/nat/relay.py on loopback: reservations are refreshed before they expire,
dropped when the relay goes away (and made again when a static relay is back), and not kept at
all while we are publicly reachable."""

from __future__ import annotations

import time

import trio

from tests.conftest import fast_config, peer_group


async def _wait(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.05)


async def test_refresh_before_expiry_drop_on_disconnect_none_while_public() -> None:
    async with peer_group(1, config=lambda: fast_config(relay_service=True)) as [(relay, _)]:
        relay_addr = relay.listen_addrs()[0]
        async with peer_group(1, config=lambda: fast_config(relays=[relay_addr])) as [(b, _)]:
            await _wait(lambda: relay.peer_id in b.relays.reservations)
            res = b.relays.reservations[relay.peer_id]
            # Pretend most of its lifetime has gone by: it must be renewed, not left to lapse.
            res.granted, res.expires = time.time() - 1000, time.time() + 10
            b.relays.poke()
            await _wait(lambda: b.relays.reservations[relay.peer_id].expires > time.time() + 60)

            # Public: no reservations (and no circuit addresses advertised).
            b.autonat.status = "public"
            b.relays.poke()
            await _wait(lambda: not b.relays.reservations)
            assert not any("p2p-circuit" in a for a in b.info()["addrs"])
            b.autonat.status = "unknown"
            b.relays.poke()
            await _wait(lambda: relay.peer_id in b.relays.reservations)

            # The relay goes away: so does the reservation and its address; a static relay is
            # dialled again and reserved on again.
            await b.host.disconnect(relay.peer_id)
            await _wait(lambda: not b.relays.reservations)
            assert not b.relays.circuit_addrs()
            await _wait(lambda: relay.peer_id in b.relays.reservations, timeout=15)
