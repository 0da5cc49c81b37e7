"""How the window words the peer's reachability (AutoNAT's verdict and our relays).

A user behind a home router needs to know one thing: can others reach me, and how. So the
verdict is said in those terms, with the relay that carries us when we are private."""

from __future__ import annotations

from collections.abc import Callable

from core.snapshots import PeerInfo


def relay_of(circuit_addr: str) -> str:
    """The relay's peer id in ``/…/p2p/<relay>/p2p-circuit/…`` ("" if there is none)."""
    parts = circuit_addr.split("/")
    if "p2p-circuit" not in parts:
        return ""
    before = parts[: parts.index("p2p-circuit")]
    for i in range(len(before) - 2, -1, -1):
        if before[i] in ("p2p", "ipfs"):
            return before[i + 1]
    return ""


PATIENCE = 60.0
"""Seconds online without a verdict after which "Checking…" becomes "unknown" (a verdict
needs two AutoNAT servers that agree; a peer with fewer may never get one)."""


def reachability_forms(
    info: PeerInfo, name: Callable[[str], str], waited: float = 0.0
) -> tuple[str, ...]:
    """ "Public", "Behind NAT — reachable via relay <name>", "Checking reachability…" or,
    ``waited`` past ``PATIENCE`` seconds with no verdict, "Reachability unknown" (``name``
    turns a relay's peer id into what the user calls it); then shorter ways to say it,
    shortest last, so a status bar too narrow for the full text shows a shorter one rather
    than cut the relay's name (the full text is in the tooltip)."""
    if info.reachability == "public":
        return ("Public" + (" · relay service on" if info.relay_service else ""),)
    if info.reachability == "private":
        relays = list(dict.fromkeys(r for r in map(relay_of, info.relay_addrs) if r))
        if not relays:
            return ("Behind NAT — no relay yet", "NAT · no relay yet")
        more = f" (+{len(relays) - 1})" if len(relays) > 1 else ""
        relay = name(relays[0])
        return (
            f"Behind NAT — reachable via relay {relay}{more}",
            f"NAT · via relay {relay}{more}",
            "NAT · via relay",
        )
    return ("Checking reachability…" if waited < PATIENCE else "Reachability unknown",)


def reachability_tooltip(info: PeerInfo) -> str:
    """The detail behind the status: every address others can dial us on."""
    lines = {
        "public": "Other peers can dial this peer directly.",
        "private": "Other peers reach this peer through a relay, then try a direct "
        "connection (hole punching).",
    }.get(
        info.reachability,
        "No verdict yet: two connected peers that offer AutoNAT must agree on whether they "
        "can dial this peer back.\nIt asks again every 5 minutes and when its addresses change.",
    )
    addrs = [*info.relay_addrs] if info.reachability == "private" else [*info.addrs]
    return "\n".join([lines, *addrs])
