"""One local port for both the WebSocket API and, optionally, a web app's files.

p2p-webapp's client connects to ``ws://<the page's own host>/ws``, so an unchanged web app
works only when its files come from the same origin as the API. ``peerdesk serve --www DIR``
does that: plain GETs get files from DIR (unknown paths get ``index.html``, as single-page
apps expect), WebSocket upgrades go to the API.

Who may talk to this port: only requests whose ``Host`` names the loopback interface
(``127.0.0.1``, ``localhost``, ``[::1]``), so a DNS-rebinding page cannot reach us under a name
of its own; and only WebSocket upgrades without an ``Origin`` (programs, not browsers) or with an
allowed one: the origin ``--www`` serves and those given with ``--allow-origin``. Any other web
page the user has open — ``Origin: null`` included — gets 403 and never a peer.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlsplit

import trio
from trio_websocket import WebSocketRequest

from core.server import wsmessages

log = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024
HEAD_TIMEOUT = 10.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})

WsHandler = Callable[[WebSocketRequest], Awaitable[None]]


class _Replay(trio.abc.Stream):
    """The connection with the request head we already read put back in front of it, so the
    WebSocket library sees the whole handshake."""

    def __init__(self, stream: trio.SocketStream, head: bytes) -> None:
        self.stream = stream
        self.head = head

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.head:
            size = len(self.head) if max_bytes is None else max_bytes
            out, self.head = self.head[:size], self.head[size:]
            return out
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()


async def serve(
    ws_handler: WsHandler,
    host: str,
    port: int,
    www: Path | None = None,
    *,
    allow_origins: Iterable[str] = (),
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    listeners = await trio.open_tcp_listeners(port, host=host)
    actual = listeners[0].socket.getsockname()[1]
    allowed = {_normal_origin(o) for o in allow_origins}
    if www is not None:
        allowed |= {f"http://{name}:{actual}" for name in LOOPBACK_HOSTS}
    task_status.started(actual)
    guard = Guard(frozenset(allowed))
    await trio.serve_listeners(partial(_connection, ws_handler, www, guard), listeners)


@dataclass(frozen=True)
class Guard:
    """What the port accepts: the browser origins allowed on the API."""

    origins: frozenset[str]

    def refusal(self, headers: dict[str, str], websocket: bool) -> str:
        """Why this request is refused, or "" when it may go on."""
        if not _loopback_host(headers.get("host", "")):
            return "Host must be 127.0.0.1, localhost or [::1]"
        origin = headers.get("origin")
        if websocket and origin is not None and _normal_origin(origin) not in self.origins:
            return f"origin {origin!r} is not allowed (see --allow-origin)"
        return ""


def _loopback_host(value: str) -> bool:
    name = value.strip().lower()
    if name.startswith("["):
        name = name.split("]", 1)[0] + "]"
    else:
        name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    return name in LOOPBACK_HOSTS


def _normal_origin(origin: str) -> str:
    """Origins compare as scheme://host[:port], lower case, without a trailing slash."""
    return origin.strip().rstrip("/").lower()


async def _connection(
    ws_handler: WsHandler, www: Path | None, guard: Guard, stream: trio.SocketStream
) -> None:
    try:
        head = await _read_head(stream)
        if head is None:
            return
        request_line, headers = _parse(head)
        websocket = "websocket" in headers.get("upgrade", "").lower()
        refusal = guard.refusal(headers, websocket)
        if refusal:
            log.warning("refused a local request: %s", refusal)
            await _reply(stream, 403, "text/plain", refusal.encode() + b"\n")
            return
        if websocket:
            async with trio.open_nursery() as nursery:
                request = await wsmessages.wrap_server_stream(nursery, _Replay(stream, head))
                await ws_handler(request)
            return
        await _static(stream, request_line, www)
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
        pass
    except Exception:
        log.exception("local web request failed")
    finally:
        await stream.aclose()


async def _read_head(stream: trio.SocketStream) -> bytes | None:
    buf = b""
    with trio.fail_after(HEAD_TIMEOUT):
        while b"\r\n\r\n" not in buf:
            chunk = await stream.receive_some(4096)
            if not chunk or len(buf) > MAX_HEAD:
                return None
            buf += chunk
    return buf


def _parse(head: bytes) -> tuple[list[str], dict[str, str]]:
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0].split(" "), headers


async def _static(stream: trio.SocketStream, request_line: list[str], www: Path | None) -> None:
    method = request_line[0] if request_line else ""
    if www is None or method not in ("GET", "HEAD") or len(request_line) < 2:
        await _reply(stream, 404, "text/plain", b"the WebSocket API is at /ws\n")
        return
    url_path = unquote(urlsplit(request_line[1]).path)
    if "\x00" in url_path:
        await _reply(stream, 400, "text/plain", b"bad path\n")
        return
    path = _resolve(www, url_path)
    if path is None:
        await _reply(stream, 404, "text/plain", b"not found\n")
        return
    body = await trio.Path(path).read_bytes()
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    await _reply(stream, 200, kind, body, head_only=method == "HEAD")


def _resolve(www: Path, url_path: str) -> Path | None:
    """A file inside ``www`` — never outside it — or the app's index.html for unknown paths."""
    root = www.resolve()
    candidate = (root / url_path.lstrip("/")).resolve()
    if candidate.is_dir():  # resolved again: the folder's index.html may be a symlink out
        candidate = (candidate / "index.html").resolve()
    if root not in candidate.parents and candidate != root:
        return None
    if candidate.is_file():
        return candidate
    index = root / "index.html"
    return index if index.is_file() else None


async def _reply(
    stream: trio.SocketStream, status: int, kind: str, body: bytes, *, head_only: bool = False
) -> None:
    reason = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found"}[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-cache\r\n"
        f"Connection: close\r\n\r\n"
    ).encode()
    await stream.send_all(head if head_only else head + body)
