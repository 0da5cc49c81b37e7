"""Every place we lean on py-libp2p 0.8.1 internals or work round its traps, in one package.

One module per part of the library (host, pubsub, kad, ...); each function names the trap it
works round (docs/spec/py-libp2p-notes.md). The tests in ``tests/core/libp2p_compat/`` fail if
the library changes under these assumptions, so an upgrade is a deliberate act. Callers import
this package, never the submodules.
"""

from core.libp2p_compat.bitswap import (
    BITSWAP_100,
    BITSWAP_110,
    BITSWAP_120,
    BITSWAP_LEGACY,
    BITSWAP_PROTOCOLS,
    PRESENCE_DONT_HAVE,
    PRESENCE_HAVE,
    WANT_BLOCK,
    WANT_HAVE,
    BitswapMessage,
)
from core.libp2p_compat.host import (
    LIBP2P_VERSION,
    QUIET_LOGGERS,
    ConnectionNotifee,
    build_host,
    forget_dial_failure,
    known_addrs,
    quiet_library_logging,
)
from core.libp2p_compat.kad import (
    INBOUND_HANDLERS,
    PROVIDER_TTL,
    REPROVIDE_INTERVAL,
    ExpiringProviderStore,
    GoLikeKadDHT,
    find_peer_network,
    find_providers_network,
    install_provider_store,
    provide_network,
    strip_p2p,
    widen_inbound_handlers,
)
from core.libp2p_compat.limits import (
    HandshakeGate,
    gate_inbound_handshakes,
    inbound_handshakes_gated,
)
from core.libp2p_compat.locks import QuickLock, locks_quickened, quicken_locks
from core.libp2p_compat.nat import (
    HOP_PROTOCOL,
    advertise_circuits,
    advertise_mapped,
    connection_kind,
    dial_circuits,
    dial_direct,
    forget_dead_connections,
    is_circuit,
    keep_one_per_kind,
    make_relay,
    observed_ips,
    only_relayed,
    reserve,
)
from core.libp2p_compat.ping import PING_PROTOCOL, muxer_rtt, ping_rtt
from core.libp2p_compat.pubsub import (
    GoLikeGossipSub,
    GuardedPubsub,
    add_direct_peer,
    is_gossip_peer,
    max_outbound_queue,
    mesh_peers,
    recording_recipients,
    remove_direct_peer,
    topic_peers,
)
from core.libp2p_compat.pubsub_speed import (
    GoIDontWantGossipSub,
    OwnSignedPubsub,
    own_signature_checks_skipped,
    reuse_signed_records,
    signed_records_reused,
    skip_own_signature_checks,
)
from core.libp2p_compat.pubsub_sync import install_subscription_repair, resync_subscriptions
from core.libp2p_compat.quic import quic_transport
from core.libp2p_compat.records import older_records_tolerated, tolerate_older_records
from core.libp2p_compat.yamux import (
    WindowExceeded,
    bound_yamux_buffers,
    coalesce_window_updates,
    frames_written_whole,
    freeze_yamux_tuning,
    window_updates_coalesced,
    write_whole_frames,
    yamux_buffers_bounded,
    yamux_tuning_frozen,
)

__all__ = [
    "BITSWAP_100",
    "BITSWAP_110",
    "BITSWAP_120",
    "BITSWAP_LEGACY",
    "BITSWAP_PROTOCOLS",
    "HOP_PROTOCOL",
    "INBOUND_HANDLERS",
    "LIBP2P_VERSION",
    "PING_PROTOCOL",
    "PRESENCE_DONT_HAVE",
    "PRESENCE_HAVE",
    "PROVIDER_TTL",
    "QUIET_LOGGERS",
    "REPROVIDE_INTERVAL",
    "WANT_BLOCK",
    "WANT_HAVE",
    "BitswapMessage",
    "ConnectionNotifee",
    "ExpiringProviderStore",
    "GoIDontWantGossipSub",
    "GoLikeGossipSub",
    "GoLikeKadDHT",
    "GuardedPubsub",
    "HandshakeGate",
    "OwnSignedPubsub",
    "QuickLock",
    "WindowExceeded",
    "add_direct_peer",
    "advertise_circuits",
    "advertise_mapped",
    "bound_yamux_buffers",
    "build_host",
    "coalesce_window_updates",
    "connection_kind",
    "dial_circuits",
    "dial_direct",
    "find_peer_network",
    "find_providers_network",
    "forget_dead_connections",
    "forget_dial_failure",
    "frames_written_whole",
    "freeze_yamux_tuning",
    "gate_inbound_handshakes",
    "inbound_handshakes_gated",
    "install_provider_store",
    "install_subscription_repair",
    "is_circuit",
    "is_gossip_peer",
    "keep_one_per_kind",
    "known_addrs",
    "locks_quickened",
    "make_relay",
    "max_outbound_queue",
    "mesh_peers",
    "muxer_rtt",
    "observed_ips",
    "older_records_tolerated",
    "only_relayed",
    "own_signature_checks_skipped",
    "ping_rtt",
    "provide_network",
    "quic_transport",
    "quicken_locks",
    "quiet_library_logging",
    "recording_recipients",
    "remove_direct_peer",
    "reserve",
    "resync_subscriptions",
    "reuse_signed_records",
    "signed_records_reused",
    "skip_own_signature_checks",
    "strip_p2p",
    "tolerate_older_records",
    "topic_peers",
    "widen_inbound_handlers",
    "window_updates_coalesced",
    "write_whole_frames",
    "yamux_buffers_bounded",
    "yamux_tuning_frozen",
]
"""What the package offers; listed so a type checker sees the re-exports as meant."""

# On for every host of the process: see yamux.py, locks.py, limits.py, pubsub_speed.py and
# records.py.
bound_yamux_buffers()
quicken_locks()
coalesce_window_updates()
freeze_yamux_tuning()
write_whole_frames()
gate_inbound_handshakes()
reuse_signed_records()
tolerate_older_records()
skip_own_signature_checks()
