"""The reserved protocol ``/p2p-webapp/1.0.0``: file lists and file content between peers.

Each request is one type byte — 0 GetFileList, 2 GetFile (then a frame ``{"cid"}``) — and the
answer on the same stream is one type byte — 1 FileList, 3 FileContent — then a frame
(4-byte big-endian length + JSON). One request per stream (wire-protocol.md §4).

Unlike the Go reader, every frame has a bound chosen for its type, checked before anything is
allocated, and a peer that sends garbage gets its stream reset while we go on. An answer can be
a whole file (up to ~190 MiB of JSON), so answers are built for at most ``ANSWERS_PER_PEER``
requests of one peer and ``ANSWERS`` in all at a time; the others wait (within the request's
deadline) holding only their stream, and a reader too slow to take the answer within that
deadline loses its stream. A file's answer is not built at all: ``StreamedContent`` writes it
as its blocks are read, so each answer in progress holds about one block.
"""

from __future__ import annotations

import base64
import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamError
from libp2p.peer.id import ID

from core.network.framing import (
    FrameError,
    StreamClosed,
    decode_json_object,
    dumps,
    encode_frame,
    read_exactly,
    read_frame,
    reset_quietly,
)

log = logging.getLogger(__name__)

PROTOCOL = TProtocol("/p2p-webapp/1.0.0")

GET_FILE_LIST, FILE_LIST, GET_FILE, FILE_CONTENT = 0, 1, 2, 3

MAX_REQUEST = 64 * 1024
MAX_FILE_LIST = 64 * 1024 * 1024
MAX_FILE_CONTENT = 192 * 1024 * 1024
"""A file sent whole in one frame, base64 inside JSON: beyond ~140 MiB of file, use bitswap."""
REQUEST_TIMEOUT = 60.0
ANSWERS_PER_PEER = 2
ANSWERS = 8
WRITE_SLICE = 1024 * 1024


@dataclass
class StreamedContent:
    """A FileContent answer whose ``"content"`` is written as it is read.

    The frame's length is known before a byte of the file is read (base64 of ``size`` bytes
    is ``4 * ceil(size / 3)`` characters), so the header, then ``fields`` (every field but
    the content), then the content chunk by chunk can go out in turn: an answer in progress
    holds one block, not the file three times over (16 slow readers of a 24 MiB file held
    ~1 GiB when answers were built whole)."""

    fields: dict[str, Any]
    size: int
    chunks: Iterator[bytes]
    """The file's bytes; read in worker threads, one ``next`` at a time."""


Answer = dict[str, Any] | StreamedContent
ListProvider = Callable[[], Awaitable[dict[str, Any]]]
ContentProvider = Callable[[str], AbstractAsyncContextManager[Answer]]
"""Entered while the answer is written: a provider keeps what the answer reads (blocks) until
it has gone out."""


class FileProtocolError(Exception):
    pass


class FileService:
    """Serves our tree to peers that ask; asks other peers for theirs."""

    def __init__(self, host: IHost, listing: ListProvider, content: ContentProvider) -> None:
        self.host = host
        self.listing = listing
        self.content = content
        self._answers = trio.CapacityLimiter(ANSWERS)
        self._per_peer: dict[ID, trio.CapacityLimiter] = {}

    def start(self) -> None:
        self.host.set_stream_handler(PROTOCOL, self._handle)

    async def _handle(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                kind = (await read_exactly(stream, 1))[0]
                if kind == GET_FILE:
                    request = decode_json_object(await read_frame(stream, MAX_REQUEST))
                elif kind != GET_FILE_LIST:
                    raise FrameError(f"unknown message type {kind}")
                async with self._answer_slot(peer):
                    if kind == GET_FILE_LIST:
                        await self._answer(stream, FILE_LIST, await self.listing())
                    else:
                        cid = request.get("cid")
                        if not isinstance(cid, str) or not cid:
                            await self._answer(
                                stream, FILE_CONTENT, {"cid": "", "error": "request has no cid"}
                            )
                        else:
                            async with self.content(cid) as answer:
                                await self._answer(stream, FILE_CONTENT, answer)
                await stream.close()
        except StreamClosed:
            pass
        except StreamError as exc:  # the asker went, or let its window stall past yamux's 5 s
            log.debug("file answer to %s cut: %r", peer, exc)
            await reset_quietly(stream)
        except (FrameError, trio.TooSlowError) as exc:
            log.warning("file request from %s refused: %s", peer, exc)
            await reset_quietly(stream)
        except Exception:
            log.exception("serving a file request from %s failed", peer)
            await reset_quietly(stream)

    @asynccontextmanager
    async def _answer_slot(self, peer: ID) -> AsyncIterator[None]:
        """One of the peer's ``ANSWERS_PER_PEER`` slots and one of the ``ANSWERS`` in all."""
        limiter = self._per_peer.get(peer)
        if limiter is None:
            limiter = self._per_peer[peer] = trio.CapacityLimiter(ANSWERS_PER_PEER)
        try:
            async with limiter, self._answers:
                yield
        finally:
            if not limiter.borrowed_tokens and not limiter.statistics().tasks_waiting:
                self._per_peer.pop(peer, None)

    @staticmethod
    async def _answer(stream: INetStream, kind: int, body: Answer) -> None:
        """Encode off the trio thread (a listing can be 64 MiB of JSON) and write the body
        without first copying it behind its header."""
        if isinstance(body, StreamedContent):
            await _write_streamed(stream, kind, body)
            return
        encoded = await trio.to_thread.run_sync(dumps, body)
        del body
        await stream.write(bytes([kind]) + struct.pack(">I", len(encoded)))
        view = memoryview(encoded)
        for at in range(0, len(encoded), WRITE_SLICE):
            await stream.write(bytes(view[at : at + WRITE_SLICE]))

    async def request_list(self, peer: ID) -> dict[str, Any]:
        """The peer's whole tree: ``{"cid": root, "entries": {path: entry}}``."""
        reply = await self._request(peer, bytes([GET_FILE_LIST]), FILE_LIST, MAX_FILE_LIST)
        if not isinstance(reply.get("cid"), str) or not isinstance(reply.get("entries"), dict):
            raise FileProtocolError("malformed file list")
        return reply

    async def request_content(self, peer: ID, cid: str) -> dict[str, Any]:
        request = bytes([GET_FILE]) + encode_frame(dumps({"cid": cid}))
        return await self._request(peer, request, FILE_CONTENT, MAX_FILE_CONTENT)

    async def _request(self, peer: ID, request: bytes, expect: int, limit: int) -> dict[str, Any]:
        stream = None
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                stream = await self.host.new_stream(peer, [PROTOCOL])
                await stream.write(request)
                kind = (await read_exactly(stream, 1))[0]
                if kind != expect:
                    raise FileProtocolError(f"expected message type {expect}, got {kind}")
                frame = await read_frame(stream, limit)
                reply = await trio.to_thread.run_sync(decode_json_object, frame)
            await stream.close()
            return reply
        except trio.TooSlowError as exc:
            raise FileProtocolError(f"{peer} did not answer within {REQUEST_TIMEOUT:g} s") from exc
        except FrameError as exc:
            raise FileProtocolError(f"bad answer from {peer}: {exc}") from exc
        except FileProtocolError:
            raise
        except Exception as exc:
            raise FileProtocolError(f"could not reach {peer}: {exc}") from exc
        finally:
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await reset_quietly(stream)  # after a completed exchange this only cleans up


async def _write_streamed(stream: INetStream, kind: int, answer: StreamedContent) -> None:
    """Header and fields, then the content in base64 as it is read, then the JSON's end."""
    head = dumps(answer.fields)[:-1] + b',"content":"'
    tail = b'"}'
    length = len(head) + 4 * -(-answer.size // 3) + len(tail)
    if length > MAX_FILE_CONTENT:
        raise FrameError(f"a {answer.size}-byte file does not fit one FileContent frame")
    await stream.write(bytes([kind]) + struct.pack(">I", length) + head)
    encoder = _Base64Pieces(answer.chunks, answer.size)
    while (piece := await trio.to_thread.run_sync(encoder.next_piece)) is not None:
        for at in range(0, len(piece), WRITE_SLICE):
            await stream.write(piece[at : at + WRITE_SLICE])
    await stream.write(tail)


class _Base64Pieces:
    """Base64 of a byte stream, piece by piece: each piece encodes a multiple of 3 bytes
    (carrying the rest to the next) so the pieces join into one valid base64 text. The
    stream must hold exactly ``size`` bytes, the length already announced."""

    def __init__(self, chunks: Iterator[bytes], size: int) -> None:
        self._chunks = chunks
        self._left = size
        self._rest = b""
        self._done = False

    def next_piece(self) -> bytes | None:
        """Worker thread: the next piece, or None after the last."""
        while not self._done:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._done = True
                if self._left:
                    raise FrameError(f"content ended {self._left} bytes short of its size")
                return base64.b64encode(self._rest) if self._rest else None
            self._left -= len(chunk)
            if self._left < 0:
                raise FrameError("content is longer than its size")
            data = self._rest + chunk
            cut = len(data) - len(data) % 3
            self._rest = data[cut:]
            if cut:
                return base64.b64encode(data[:cut])
        return None
