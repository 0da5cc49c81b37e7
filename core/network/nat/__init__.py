"""Reaching peers across NATs: what we advertise, relays, hole punching, reachability.

Each module has one job: ``addrs`` (the addresses we advertise), ``relay`` (reservations on
relays and the relay service), ``holepunch`` (DCUtR: relayed to direct), ``autonat`` (are we
reachable), ``portmap`` and ``natpmp`` (port mapping on the router: UPnP IGD, NAT-PMP).
Library workarounds live in ``core/libp2p_compat/nat.py``.
"""
