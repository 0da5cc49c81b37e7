"""Paths inside a peer's file tree: slash-separated, relative, normalised, and refused with a
clear message when they could escape, collide or not round-trip through other IPFS tools."""

from __future__ import annotations

MAX_NAME_BYTES = 255
MAX_DEPTH = 64


class PathError(ValueError):
    pass


def split_path(path: str, *, allow_root: bool = False) -> list[str]:
    """``"docs/readme.txt"`` → ``["docs", "readme.txt"]``. Leading/trailing slashes and ``.``
    segments are tolerated (they mean nothing); ``..``, empty segments in the middle, NUL and
    names over 255 bytes are refused."""
    if not isinstance(path, str):
        raise PathError("a path is a string")
    if "\0" in path:
        raise PathError("a path cannot contain NUL")
    trimmed = path.strip("/")
    if not trimmed:
        if allow_root:
            return []
        raise PathError("the path is empty")
    parts = trimmed.split("/")
    out = []
    for part in parts:
        if part == "":
            raise PathError(f"{path!r} has an empty segment")
        if part == ".":
            continue
        if part == "..":
            raise PathError(f"{path!r} goes above the root with '..'")
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise PathError(f"the name {part[:40]!r}… is longer than {MAX_NAME_BYTES} bytes")
        try:
            part.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PathError(f"{path!r} is not valid Unicode") from exc
        out.append(part)
    if not out and not allow_root:
        raise PathError("the path is empty")
    if len(out) > MAX_DEPTH:
        raise PathError(f"the path is deeper than {MAX_DEPTH} folders")
    return out


def join_path(parts: list[str]) -> str:
    return "/".join(parts)
