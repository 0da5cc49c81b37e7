"""The reserved protocol ``/p2p-webapp/1.0.0``: file lists and file content between peers.

Each request is one type byte — 0 GetFileList, 2 GetFile (then a frame ``{"cid"}``) — and the
answer on the same stream is one type byte — 1 FileList, 3 FileContent — then a frame
(4-byte big-endian length + JSON). One request per stream (wire-protocol.md §4).

Unlike the Go reader, every frame has a bound chosen for its type, checked before anything is
allocated, and a peer that sends garbage gets its stream reset while we go on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.peer.id import ID

from .framing import (
    FrameError,
    StreamClosed,
    decode_json_object,
    dumps,
    encode_frame,
    read_exactly,
    read_frame,
)

log = logging.getLogger(__name__)

PROTOCOL = "/p2p-webapp/1.0.0"

GET_FILE_LIST, FILE_LIST, GET_FILE, FILE_CONTENT = 0, 1, 2, 3

MAX_REQUEST = 64 * 1024
MAX_FILE_LIST = 64 * 1024 * 1024
MAX_FILE_CONTENT = 192 * 1024 * 1024
"""A file sent whole in one frame, base64 inside JSON: beyond ~140 MiB of file, use bitswap."""
REQUEST_TIMEOUT = 60.0

ListProvider = Callable[[], Awaitable[dict[str, Any]]]
ContentProvider = Callable[[str], Awaitable[dict[str, Any]]]


class FileProtocolError(Exception):
    pass


class FileService:
    """Serves our tree to peers that ask; asks other peers for theirs."""

    def __init__(self, host: IHost, listing: ListProvider, content: ContentProvider) -> None:
        self.host = host
        self.listing = listing
        self.content = content

    def start(self) -> None:
        self.host.set_stream_handler(PROTOCOL, self._handle)

    async def _handle(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                kind = (await read_exactly(stream, 1))[0]
                if kind == GET_FILE_LIST:
                    answer = FILE_LIST, await self.listing()
                elif kind == GET_FILE:
                    request = decode_json_object(await read_frame(stream, MAX_REQUEST))
                    cid = request.get("cid")
                    if not isinstance(cid, str) or not cid:
                        answer = FILE_CONTENT, {"cid": "", "error": "request has no cid"}
                    else:
                        answer = FILE_CONTENT, await self.content(cid)
                else:
                    raise FrameError(f"unknown message type {kind}")
                # A whole file, base64 inside JSON, can be 190 MiB: encode it off the trio thread.
                payload = await trio.to_thread.run_sync(
                    lambda: bytes([answer[0]]) + encode_frame(dumps(answer[1]))
                )
                await stream.write(payload)
                await stream.close()
        except StreamClosed:
            pass
        except (FrameError, trio.TooSlowError) as exc:
            log.warning("file request from %s refused: %s", peer, exc)
            await _reset(stream)
        except Exception:
            log.exception("serving a file request from %s failed", peer)
            await _reset(stream)

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
                    await _reset(stream)  # after a completed exchange this only cleans up


async def _reset(stream: INetStream) -> None:
    try:
        with trio.move_on_after(2):
            await stream.reset()
    except Exception:
        log.debug("reset failed", exc_info=True)
