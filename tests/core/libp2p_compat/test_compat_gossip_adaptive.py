"""py-libp2p 0.8.1's "adaptive gossip" trap, and that our router is built without it.

Once its network-health score drops (an empty or small mesh, churn), the library stretches the
heartbeat from whatever was configured to 30-60 s and lifts D_hi by up to 4: a swarm of 16 saw
meshes of 0 and 15 and delivery tails of 20 s. go-libp2p-pubsub keeps D and the heartbeat fixed,
and so does p2p-webapp. The first tests fail when the library changes under us; the last ones
when our router stops opting out.
"""

from __future__ import annotations

import inspect

from libp2p.pubsub.gossipsub import GossipSub

from core.network import topics


def test_the_library_stretches_a_half_second_heartbeat_when_health_is_low() -> None:
    router = topics.make_router(GossipSub)
    router.adaptive_gossip_enabled = True  # the library's default
    router.network_health_score = 0.3
    router._adapt_gossip_parameters()
    assert router.heartbeat_interval >= 30
    assert router.adaptive_degree_high > router.degree_high


def test_the_heartbeat_loop_still_adapts_only_behind_the_flag() -> None:
    source = inspect.getsource(GossipSub.heartbeat)
    assert "if self.adaptive_gossip_enabled:" in source
    assert "self._adapt_gossip_parameters()" in source
    assert "if self.eclipse_protection_enabled:" in source
    assert "adaptive_degree_high" in inspect.getsource(GossipSub.mesh_heartbeat)


def test_our_router_keeps_its_heartbeat_and_bounds_whatever_the_health() -> None:
    router = topics.make_router()
    assert router.adaptive_gossip_enabled is False
    assert router.eclipse_protection_enabled is False
    router.network_health_score = 0.0
    router._adapt_gossip_parameters()
    assert router.heartbeat_interval == topics.HEARTBEAT
    assert (router.adaptive_degree_low, router.adaptive_degree_high) == (5, 12)
