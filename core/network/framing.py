"""Length-prefixed frames on libp2p streams, bounded so a hostile length cannot make us allocate.

py-libp2p's ``read_exactly`` gives up after 100 partial reads and ``read()`` raises at EOF instead
of returning ``b""``; these helpers loop themselves and turn every end-of-stream shape into one
exception the callers handle.
"""

from __future__ import annotations

import json
import logging
import math
import struct
from typing import Any, Protocol

import trio

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


class FrameBudget:
    """Bytes of unfinished frames one remote may make us hold at once, over all its streams.

    A frame's length is charged when its header arrives and released when its body is in (or
    the stream fails), so 64 streams each stopping one byte short of a 4 MiB frame cost the
    budget, not 256 MiB."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def charge(self, length: int) -> None:
        if self.used + length > self.limit:
            raise FrameTooLarge(
                f"{self.used} bytes of unfinished frames already; {length} more exceed "
                f"the {self.limit}-byte budget"
            )
        self.used += length

    def release(self, length: int) -> None:
        self.used -= length


async def read_frame(
    stream: ReadStream,
    max_len: int = MAX_FRAME,
    *,
    body_timeout: float | None = None,
    budget: FrameBudget | None = None,
) -> bytes:
    """One frame. The wait for a header is unbounded (idle streams are fine); once a header
    has come, the body must follow within ``body_timeout`` seconds and fit in ``budget``."""
    (length,) = struct.unpack(">I", await read_exactly(stream, 4))
    if length > max_len:
        raise FrameTooLarge(f"frame of {length} bytes exceeds the {max_len}-byte limit")
    if budget is not None:
        budget.charge(length)
    try:
        with trio.fail_after(body_timeout if body_timeout is not None else math.inf):
            return await read_exactly(stream, length)
    except trio.TooSlowError as exc:
        raise FrameError(f"frame body of {length} bytes not in within {body_timeout:g} s") from exc
    finally:
        if budget is not None:
            budget.release(length)


class FrameReader:
    """Frames from one stream, read in chunks: one read brings in every frame that has arrived
    (one trip through the muxer instead of two per frame), and ``frame_ready`` tells the caller
    whether the next one is already here, so it can answer a burst of frames with one write.

    The same bounds as ``read_frame``: a frame's length is checked on its header, an unfinished
    frame is charged to ``budget`` and must complete within ``body_timeout``. Beyond the frame
    being read, at most one chunk is held."""

    CHUNK = 64 * 1024

    def __init__(
        self,
        stream: ReadStream,
        max_len: int = MAX_FRAME,
        *,
        body_timeout: float | None = None,
        budget: FrameBudget | None = None,
    ) -> None:
        self._stream = stream
        self._max_len = max_len
        self._body_timeout = body_timeout if body_timeout is not None else math.inf
        self._budget = budget
        self._buf = bytearray()

    def frame_ready(self) -> bool:
        """A whole frame (or a header that ``next`` will refuse) is buffered: ``next`` will
        not wait."""
        if len(self._buf) < 4:
            return False
        length: int = struct.unpack_from(">I", self._buf)[0]
        return length > self._max_len or len(self._buf) >= 4 + length

    async def _more(self, wanted: int) -> None:
        try:
            chunk = await self._stream.read(max(wanted, self.CHUNK))
        except Exception as exc:  # StreamEOF, StreamReset, closed muxer: all mean "gone"
            raise StreamClosed(str(exc) or type(exc).__name__) from exc
        if not chunk:
            raise StreamClosed("end of stream")
        self._buf += chunk

    async def next(self) -> bytes:
        """The next frame's body. The wait for a header is unbounded (idle streams are fine)."""
        buf = self._buf
        while len(buf) < 4:
            await self._more(4 - len(buf))
        (length,) = struct.unpack_from(">I", buf)
        if length > self._max_len:
            raise FrameTooLarge(f"frame of {length} bytes exceeds the {self._max_len}-byte limit")
        end = 4 + length
        if len(buf) < end:
            if self._budget is not None:
                self._budget.charge(length)
            try:
                with trio.fail_after(self._body_timeout):
                    while len(buf) < end:
                        await self._more(end - len(buf))
            except trio.TooSlowError as exc:
                raise FrameError(
                    f"frame body of {length} bytes not in within {self._body_timeout:g} s"
                ) from exc
            finally:
                if self._budget is not None:
                    self._budget.release(length)
        frame = bytes(buf[4:end])
        del buf[:end]
        return frame


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


class Resettable(Protocol):
    async def reset(self) -> None: ...


async def reset_quietly(stream: Resettable) -> None:
    """Reset a stream we give up on (bad input, a deadline): it may be gone already, which is
    no news, and a peer that stops answering must not hold us here."""
    try:
        with trio.move_on_after(2):
            await stream.reset()
    except Exception:
        logging.getLogger(__name__).debug("reset failed", exc_info=True)
