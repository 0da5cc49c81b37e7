"""Fails when py-libp2p changes under the workarounds in core/libp2p_compat/."""

from __future__ import annotations

import inspect

import libp2p
from libp2p.kad_dht.provider_store import ProviderStore
from libp2p.network.swarm import Swarm
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import RpcQueue

from core import libp2p_compat as compat
from core.profile import identity


def test_library_is_the_version_the_workarounds_were_written_for() -> None:
    assert libp2p.__version__ == compat.LIBP2P_VERSION


def test_internals_we_rely_on_are_still_there() -> None:
    assert "peer_topics" in inspect.getsource(Pubsub.__init__)
    assert "peer_queues" in inspect.getsource(Pubsub.__init__)
    assert "self._queue" in inspect.getsource(RpcQueue.__init__)
    assert "direct_peers" in inspect.getsource(GossipSub.__init__)
    assert "mesh" in inspect.getsource(GossipSub.__init__)
    assert hasattr(Swarm, "unblock_peer")
    # find_providers_network() relies on the local-store shortcut being taken synchronously,
    # before the first await of find_providers.
    src = inspect.getsource(ProviderStore.find_providers)
    head = src.split("local_providers = self.get_providers(key)")[0]
    assert "await" not in head.split('"""')[-1]


def test_host_offers_noise_and_yamux_only_and_no_auto_dialer() -> None:
    host = compat.build_host(identity.generate())
    upgrader = host.get_network().upgrader
    sec = list(upgrader.security_multistream.transports)
    mux = list(upgrader.muxer_multistream.transports)
    assert [str(p) for p in sec] == ["/noise"]
    assert [str(p) for p in mux] == ["/yamux/1.0.0"]
    assert host.get_network().connection_config.max_connections_per_peer == 1


def test_strip_p2p() -> None:
    import multiaddr

    out = compat.strip_p2p(
        [
            multiaddr.Multiaddr(
                "/ip4/127.0.0.1/tcp/5/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
            )
        ]
    )
    assert [str(a) for a in out] == ["/ip4/127.0.0.1/tcp/5"]
