"""Display names for peers: stable, derived from the peer id, unless the user set a nickname.

A per-window counter ("peer-2") named the same peer differently in every window and after
every restart. A name derived from a hash of the id is the same everywhere and always; the
short id next to it still tells two peers apart if their names ever collide (or a peer
chooses a name that imitates another's)."""

from __future__ import annotations

import hashlib

ADJECTIVES = (
    "amber azure bold brave brisk calm clever coral crisp dawn deep eager fair fleet gentle "
    "glad golden green hazel jade keen kind lively lucky mellow misty noble olive quick quiet "
    "rapid royal ruby rustic sage scarlet shy silver sleek snowy solar steady sunny swift tidy "
    "topaz velvet vivid warm wild windy witty young zesty"
).split()
ANIMALS = (
    "badger bear beaver bison crane crow deer dolphin eagle falcon ferret finch fox gecko "
    "heron ibis jay koala lark lemur lion lynx marten mole moose newt otter owl panda parrot "
    "puffin quail rabbit raven robin salmon seal shrew sparrow stoat swan tapir tiger toad "
    "trout turtle viper walrus wolf wombat wren yak zebra"
).split()


def derived_name(peer: str) -> str:
    """The same two words for the same peer id, in every window and every session."""
    digest = hashlib.sha256(peer.encode()).digest()
    first = int.from_bytes(digest[:4], "big") % len(ADJECTIVES)
    second = int.from_bytes(digest[4:8], "big") % len(ANIMALS)
    return f"{ADJECTIVES[first]}-{ANIMALS[second]}"


def display_name(peer: str, nicknames: dict[str, str], chosen: dict[str, str] | None = None) -> str:
    """Your nickname for the peer wins, then the name the peer chose for itself, then the
    name derived from its id."""
    return nicknames.get(peer) or (chosen or {}).get(peer) or derived_name(peer)
