"""Length-prefixed frames on libp2p streams, bounded so a hostile length cannot make us allocate.

py-libp2p's ``read_exactly`` gives up after 100 partial reads and ``read()`` raises at EOF instead
of returning ``b""``; these helpers loop themselves and turn every end-of-stream shape into one
exception the callers handle.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Protocol

MAX_FRAME = 4 * 1024 * 1024
"""Default bound on one frame: far above any chat message, far below what would hurt us."""


class FrameError(Exception):
    """The remote sent something that is not a well-formed frame; the stream is unusable."""


class FrameTooLarge(FrameError):
    pass


class StreamClosed(FrameError):
    """End of stream (or reset: py-libp2p cannot tell them apart)."""


class ReadStream(Protocol):
    async def read(self, n: int | None = None) -> bytes: ...


async def read_exactly(stream: ReadStream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = await stream.read(n - len(buf))
        except Exception as exc:  # StreamEOF, StreamReset, closed muxer: all mean "gone"
            raise StreamClosed(str(exc) or type(exc).__name__) from exc
        if not chunk:
            raise StreamClosed("end of stream")
        buf += chunk
    return bytes(buf)


async def read_frame(stream: ReadStream, max_len: int = MAX_FRAME) -> bytes:
    (length,) = struct.unpack(">I", await read_exactly(stream, 4))
    if length > max_len:
        raise FrameTooLarge(f"frame of {length} bytes exceeds the {max_len}-byte limit")
    return await read_exactly(stream, length)


def encode_frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def loads(data: bytes | str) -> Any:
    """``json.loads`` for untrusted input: deeply nested arrays (``[[[[…``) make the parser
    raise RecursionError, which would otherwise escape handlers built for ValueError."""
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def decode_json_object(payload: bytes) -> dict[str, Any]:
    """Parse a frame body that must be a JSON object; anything else is a protocol error."""
    try:
        value = loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FrameError(f"frame is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise FrameError("frame is not a JSON object")
    return value


def dumps(value: Any) -> bytes:
    """Compact JSON as Go's encoding/json writes it, so frames match byte for byte."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
