"""WebSocket messages of any size the API accepts, with bounded memory.

trio-websocket assembles each message in memory and closes the connection (1009) past its size
limit, so a 64 MiB ``storefile`` cost ~4x its size and a bigger one dropped the client's peer.
``SpoolingConnection`` keeps small messages as they are; a message past ``SPOOL_AT`` goes to a
temporary file as it arrives, and one past ``MAX_MESSAGE`` is read to its end and dropped,
leaving an ``Oversized`` marker the API answers with an error — the connection stays.

A spooled message is parsed by ``parse_spooled``: strings longer than ``INLINE_STRING`` become
``BigString`` ranges of the file, never Python strings, so a 256 MiB file's base64 is decoded
from disk to disk in slices (``BigString.decode_base64_to``).

Disk is bounded too, over every connection of the process: spool files and the files decoded
from them draw on one ``SpoolBudget`` (``BUDGET``, ``DISK_BUDGET`` bytes). A message that would
pass it is read to its end and dropped like an oversized one, with its own error answer; a
decode that would pass it fails with an error answer. What a message holds comes back when it
is closed. Without it, 64 clients each with a few 384 MiB messages in flight (one arriving,
one queued, one being decoded) could hold ~90 GB of disk.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

import trio
import wsproto.events
from trio_websocket import WebSocketConnection
from wsproto import ConnectionType, WSConnection

from core.network.framing import loads

SPOOL_AT = 1024 * 1024
MAX_MESSAGE = 384 * 1024 * 1024
"""Room for a 256 MiB file in base64 (342 MiB) and its JSON envelope."""
DISK_BUDGET = 2 * 1024 * 1024 * 1024
"""Disk for spooled messages of all clients at once: three of the biggest ``storefile``s."""
INLINE_STRING = 64 * 1024
READ_SLICE = 4 * 1024 * 1024
RECEIVE_BUFFER = 64 * 1024
_BIG = "\x00big:"
_SPECIAL = re.compile(rb'["\\]')
_REQUEST_ID = re.compile(r'"requestid"\s*:\s*(-?\d+)')


class SpoolBudget:
    """Bytes of disk that spooled messages of every connection may hold at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()  # decodes draw on it from worker threads

    def account(self) -> SpoolAccount:
        return SpoolAccount(self)

    def _take(self, account: SpoolAccount, size: int) -> bool:
        with self._lock:
            if self.used + size > self.limit:
                return False
            self.used += size
            account.held += size
            return True

    def _give(self, account: SpoolAccount) -> None:
        with self._lock:
            self.used -= account.held
            account.held = 0


class SpoolAccount:
    """What one message holds of the budget, given back when it is closed, or at the latest
    when it is collected (a message left in a closed connection's queue is never closed)."""

    def __init__(self, budget: SpoolBudget) -> None:
        self.budget = budget
        self.held = 0

    def take(self, size: int) -> bool:
        return self.budget._take(self, size)

    def release(self) -> None:
        if self.held:
            self.budget._give(self)

    def __del__(self) -> None:
        self.release()


BUDGET = SpoolBudget(DISK_BUDGET)


@dataclass
class Oversized:
    """A message read and dropped (past MAX_MESSAGE, or past the disk budget: ``reason``);
    ``head`` is its start, for its request id."""

    size: int
    head: str
    reason: str = ""

    def request_id(self) -> int:
        found = _REQUEST_ID.search(self.head)
        return int(found.group(1)) if found else -1

    def error(self) -> str:
        """The error answer's message."""
        return self.reason or f"message of {self.size} bytes exceeds the {MAX_MESSAGE}-byte limit"


@dataclass
class Spooled:
    """A finished message kept in a temporary file (UTF-8 JSON text)."""

    file: IO[bytes]
    size: int
    account: SpoolAccount | None = None

    def close(self) -> None:
        self.file.close()
        if self.account is not None:
            self.account.release()


@dataclass(frozen=True)
class BigString:
    """A JSON string value left in the spool file: bytes ``[start, end)`` between its quotes."""

    file: IO[bytes]
    start: int
    end: int
    escaped: bool
    account: SpoolAccount | None = None
    """The message's share of the budget, which what is decoded from it draws on too."""

    def __len__(self) -> int:
        return self.end - self.start

    def decode_base64_to(self, out: IO[bytes]) -> int:
        """Decode the base64 text into ``out`` slice by slice; return the byte count."""
        if self.escaped:
            raise ValueError("invalid base64 content (escape sequences)")
        self.file.seek(self.start)
        left, written, carry = self.end - self.start, 0, b""
        while left:
            piece = self.file.read(min(READ_SLICE, left))
            if not piece:
                raise ValueError("message spool ended early")
            left -= len(piece)
            text = carry + piece
            cut = len(text) - len(text) % 4 if left else len(text)
            text, carry = text[:cut], text[cut:]
            try:
                data = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError("invalid base64 content") from exc
            if self.account is not None and not self.account.take(len(data)):
                raise ValueError(_over_budget(self.account.budget))
            out.write(data)
            written += len(data)
        return written


class SpoolingConnection(WebSocketConnection):
    """trio-websocket's connection with the message assembly above (``_handle_message_event``
    is the one place messages are put together;
    tests/core/libp2p_compat/test_compat_limits.py checks it)."""

    def __init__(self, *args: Any, budget: SpoolBudget | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.message_started: float | None = None
        """``time.monotonic()`` when the message being received began, None between them."""
        self._budget = budget or BUDGET
        self._spool: IO[bytes] | None = None
        self._account: SpoolAccount | None = None
        self._head = ""
        self._dropping = False
        self._drop_reason = ""

    async def _handle_message_event(
        self, event: wsproto.events.BytesMessage | wsproto.events.TextMessage
    ) -> None:
        if self.message_started is None:
            self.message_started = time.monotonic()
        part = event.data.encode() if isinstance(event.data, str) else bytes(event.data)
        self._message_size += len(part)
        if len(self._head) < 256:
            self._head += part[:256].decode("utf-8", "replace")
        if self._message_size > MAX_MESSAGE:
            self._drop_parts("")
        elif self._dropping:
            pass
        elif self._spool is not None:
            assert self._account is not None
            if self._account.take(len(part)):
                self._spool.write(part)
            else:
                self._drop_parts(_over_budget(self._budget))
        elif self._message_size > SPOOL_AT:
            self._start_spool(part)
        else:
            data = event.data
            self._message_parts.append(bytes(data) if isinstance(data, bytearray) else data)
        if event.message_finished:
            await self._finish_message(event)

    def _start_spool(self, part: bytes) -> None:
        """Move the message to a spool file, if the budget has room for what came so far."""
        self._account = self._budget.account()
        if not self._account.take(self._message_size):
            self._drop_parts(_over_budget(self._budget))
            return
        self._spool = tempfile.TemporaryFile()
        for earlier in self._message_parts:
            self._spool.write(earlier.encode() if isinstance(earlier, str) else earlier)
        self._message_parts = []
        self._spool.write(part)

    async def _finish_message(
        self, event: wsproto.events.BytesMessage | wsproto.events.TextMessage
    ) -> None:
        """Queue the finished message (or its Oversized marker) for the API."""
        message: Any
        if self._dropping:
            message = Oversized(self._message_size, self._head, self._drop_reason)
        elif self._spool is not None:
            message = Spooled(self._spool, self._message_size, self._account)
        elif isinstance(event, wsproto.events.BytesMessage):
            message = b"".join(self._message_parts)  # type: ignore[arg-type]
        else:
            message = "".join(self._message_parts)  # type: ignore[arg-type]
        self._spool, self._account, self._dropping, self._head = None, None, False, ""
        self._message_parts, self._message_size = [], 0
        self.message_started = None
        try:
            await self._send_channel.send(message)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            if isinstance(message, Spooled):
                message.close()

    def _drop_parts(self, reason: str) -> None:
        self._dropping, self._drop_reason = True, reason
        self._message_parts = []
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        if self._account is not None:
            self._account.release()
            self._account = None

    async def read_messages(self) -> None:
        """trio-websocket's reader task; a message unfinished when it ends gives back its
        spool at once."""
        try:
            await self._reader_task()
        finally:
            self._drop_parts("")

    async def close_for(self, code: int, reason: str) -> None:
        """Close with a reason, bounded: a client that does not read cannot hold us. The
        message queue is closed first, or the reader task would wait on it for ever."""
        await self._recv_channel.aclose()
        with trio.move_on_after(2):
            await self.aclose(code, reason)


async def wrap_server_stream(nursery: trio.Nursery, stream: trio.abc.Stream) -> Any:
    """trio_websocket.wrap_server_stream, with a SpoolingConnection."""
    connection = SpoolingConnection(
        stream,
        WSConnection(ConnectionType.SERVER),
        max_message_size=MAX_MESSAGE * 2,  # the library's own limit never applies first
        receive_buffer_size=RECEIVE_BUFFER,
    )
    nursery.start_soon(connection.read_messages)
    return await connection._get_request()


def parse_spooled(spooled: Spooled) -> Any:
    """The message's JSON with long strings as BigString ranges of the file (runs in a thread:
    it reads the whole file once)."""
    skeleton, strings = _skeleton(spooled.file, spooled.account)

    def restore(value: Any) -> Any:
        if isinstance(value, str) and value.startswith(_BIG):
            return strings[int(value[len(_BIG) :])]
        if isinstance(value, dict):
            return {k: restore(v) for k, v in value.items()}
        if isinstance(value, list):
            return [restore(v) for v in value]
        return value

    return restore(loads(skeleton))


def _over_budget(budget: SpoolBudget) -> str:
    return (
        f"the server's {budget.limit}-byte disk budget for big messages of all clients is in "
        "use; send it again later"
    )


def _skeleton(file: IO[bytes], account: SpoolAccount | None) -> tuple[bytes, list[BigString]]:
    """The JSON text with each string longer than INLINE_STRING replaced by a placeholder."""
    file.seek(0)
    out = bytearray()
    strings: list[BigString] = []
    offset = 0
    in_string = escape_next = escaped = False
    start = 0
    text = bytearray()
    while chunk := file.read(READ_SLICE):
        i = 0
        while i < len(chunk):
            if escape_next:
                escape_next = False
                if len(text) <= INLINE_STRING:
                    text += chunk[i : i + 1]
                i += 1
                continue
            if not in_string:
                j = chunk.find(b'"', i)
                if j < 0:
                    out += chunk[i:]
                    break
                out += chunk[i:j]
                in_string, escaped, start, text = True, False, offset + j + 1, bytearray()
                i = j + 1
                continue
            found = _SPECIAL.search(chunk, i)
            j = found.start() if found else len(chunk)
            if len(text) <= INLINE_STRING:
                text += chunk[i:j]
            if found is None:
                break
            if chunk[j] == 0x5C:  # backslash: the next byte is part of an escape
                escaped = escape_next = True
                if len(text) <= INLINE_STRING:
                    text += b"\\"
                i = j + 1
                continue
            in_string = False
            if len(text) > INLINE_STRING:
                out += json.dumps(f"{_BIG}{len(strings)}").encode()
                strings.append(BigString(file, start, offset + j, escaped, account))
            else:
                out += b'"' + text + b'"'
            i = j + 1
        offset += len(chunk)
    if in_string:
        raise ValueError("malformed JSON: unterminated string")
    return bytes(out), strings
