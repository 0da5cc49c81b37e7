"""Reaching peers across NATs: what we advertise, relays, hole punching, reachability.

Each module has one job: ``addrs`` (the addresses we advertise), ``relay`` (reservations on
relays and the relay service), ``holepunch`` (DCUtR: relayed to direct). Library workarounds
live in ``core/libp2p_compat/nat.py``.
"""
