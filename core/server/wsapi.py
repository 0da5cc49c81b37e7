"""p2p-webapp's local WebSocket JSON API (wire-protocol.md §9), so its web apps run unchanged.

Envelope: ``{"requestid", "method", "params", "result", "error": {"code", "message"},
"isresponse"}``. Each connection gets one peer (method ``peer``); closing the socket removes it.

Where we differ from the Go server, on purpose and invisibly to its client library:
``send`` is answered only once the remote peer acked (then the ``ack`` push) or delivery failed
(an error response, plus a ``sendFailed`` push that old clients ignore); malformed JSON gets an
error response instead of silence. Requests are handled in order, but a ``send`` waiting for its
ack or a ``subscribe`` waiting for the mesh runs on its own, holding up nothing behind it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

from core import __version__
from core.events import Event, GotFile, PeerChange, PeerData, PeerFailed, PeerFiles, TopicData
from core.network.direct import DeliveryFailed, QueueFull
from core.network.framing import loads
from core.peer import Peer
from core.profile import identity
from core.server import webserver, wsmessages
from core.server.manager import PeerInUse, PeerManager, TooManyPeers

log = logging.getLogger(__name__)

OUTBOX = 10_000
OUTBOX_BYTES = 64 * 1024 * 1024
"""What a client that stops reading may make us hold for it; past it the client is closed with
a reason (close code 1008) — its peer goes, nobody else is touched. One message is always
accepted into an empty outbox, so a single big answer (a ``gotFile`` of a large file) passes."""
TOO_SLOW = 1008
MAX_OTHER_MESSAGE = 16 * 1024 * 1024
"""Messages other than ``storefile`` are parsed whole: room for the largest direct message."""
MESSAGE_TIMEOUT = 60.0
"""An unfinished WebSocket message (the client sent part of it and stopped) closes the
connection after this: its parts would otherwise wait in a spool file without end."""


class ApiError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _bad(message: str) -> ApiError:
    return ApiError(400, message)


def _str(params: dict[str, Any], name: str, *, optional: bool = False) -> str:
    value = params.get(name)
    if value is None and optional:
        return ""
    if not isinstance(value, str) or (not value and not optional):
        raise _bad(f"invalid params: {name} must be a non-empty string")
    try:
        value.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate ("\ud800") is valid JSON, not UTF-8
        raise _bad(f"invalid params: {name} is not valid Unicode") from exc
    return value


def _str_list(params: dict[str, Any], name: str) -> list[str]:
    value = params.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f"invalid params: {name} must be a list of strings")
    return value


class WsApi:
    """Serves ``ws://HOST:PORT/ws``; every connection becomes a ``Session``."""

    def __init__(self, manager: PeerManager, allow_origins: Iterable[str] = ()) -> None:
        self.manager = manager
        self.allow_origins = tuple(allow_origins)
        """Browser origins besides the ``--www`` one that may use the API (webserver.Guard)."""
        self.sessions: set[Session] = set()

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        www: Path | None = None,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve the API on ``/ws`` and, with ``www``, a web app's files on the same port."""
        await webserver.serve(
            self._handle, host, port, www, allow_origins=self.allow_origins, task_status=task_status
        )

    async def _handle(self, request: WebSocketRequest) -> None:
        if request.path.split("?")[0] not in ("/ws", "/ws/"):
            await request.reject(404, body=b"the WebSocket API is at /ws\n")
            return
        conn = await request.accept()
        session = Session(conn, self.manager)
        self.sessions.add(session)
        try:
            await session.run()
        except Exception:  # one client's trouble must never take the server down
            log.exception("WebSocket session failed")
        finally:
            self.sessions.discard(session)


class Session:
    def __init__(self, conn: WebSocketConnection, manager: PeerManager) -> None:
        self.conn = conn
        self.manager = manager
        self.peer: Peer | None = None
        self._push_id = 0
        self._listing: dict[str, list[int]] = {}
        """Target peer → ids of ``listfiles`` requests waiting for its listing."""
        self._out_send, self._out_recv = trio.open_memory_channel[str](OUTBOX)
        self._out_bytes = 0
        self._close_reason = ""
        self._nursery: trio.Nursery | None = None
        self._methods: dict[str, Callable[[int, dict[str, Any]], Awaitable[Any]]] = {
            "peer": self._peer,
            "start": self._start,
            "stop": self._stop,
            "send": self._send,
            "subscribe": self._subscribe,
            "publish": self._publish,
            "unsubscribe": self._unsubscribe,
            "listpeers": self._listpeers,
            "addpeers": self._addpeers,
            "removepeers": self._removepeers,
            "monitor": self._monitor,
            "stopmonitor": self._stopmonitor,
            "storefile": self._storefile,
            "removefile": self._removefile,
            "listfiles": self._listfiles,
            "getfile": self._getfile,
            "connect": self._connect,
            "info": self._info,
        }

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._writer)
                nursery.start_soon(self._watch_unfinished)
                await self._reader()
                nursery.cancel_scope.cancel()
            if self._close_reason and isinstance(self.conn, wsmessages.SpoolingConnection):
                await self.conn.close_for(TOO_SLOW, self._close_reason)
        finally:
            if self.peer is not None:
                self.peer.remove_sink(self._on_event)
                with trio.CancelScope(shield=True):
                    await self.manager.remove_peer(str(self.peer.peer_id))

    async def _reader(self) -> None:
        assert self._nursery is not None
        while True:
            try:
                message = await self.conn.get_message()
            except ConnectionClosed:
                return
            if isinstance(message, wsmessages.Oversized):
                self._respond(message.request_id(), error=_bad(message.error()))
                continue
            try:
                await self._handle_message(message)
            finally:
                if isinstance(message, wsmessages.Spooled):
                    message.close()

    async def _handle_message(self, message: str | bytes | wsmessages.Spooled) -> None:
        try:
            if isinstance(message, wsmessages.Spooled):
                msg = await trio.to_thread.run_sync(wsmessages.parse_spooled, message)
            else:
                msg = loads(message)
            if not isinstance(msg, dict):
                raise ValueError("a request is a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            self._respond(-1, error=_bad(f"malformed JSON: {exc}"))
            return
        request_id = msg.get("requestid")
        if not isinstance(request_id, int) or isinstance(request_id, bool):
            self._respond(-1, error=_bad("requestid must be an integer"))
            return
        if msg.get("isresponse"):
            return  # clients may answer our pushes; nothing waits for that
        method, params = msg.get("method"), msg.get("params")
        if method != "storefile" and _has_big_string(params):
            assert isinstance(message, wsmessages.Spooled)
            if message.size > MAX_OTHER_MESSAGE:
                self._respond(
                    request_id,
                    error=_bad(f"a {method} message is limited to {MAX_OTHER_MESSAGE} bytes"),
                )
                return
            params = (await trio.to_thread.run_sync(_load_whole, message)).get("params")
        await self._dispatch(request_id, method, params)

    async def _watch_unfinished(self) -> None:
        """A message must be finished within MESSAGE_TIMEOUT of its first part."""
        conn = self.conn
        while True:
            await trio.sleep(1)
            started = getattr(conn, "message_started", None)
            if started is not None and time.monotonic() - started > MESSAGE_TIMEOUT:
                self._too_slow(f"message not finished within {MESSAGE_TIMEOUT:g} s")
                return

    async def _dispatch(self, request_id: int, method: Any, params: Any) -> None:
        handler = self._methods.get(method) if isinstance(method, str) else None
        if handler is None:
            self._respond(request_id, error=_bad(f"unknown method: {method}"))
            return
        if params is None:
            params = {}
        if not isinstance(params, dict):
            self._respond(request_id, error=_bad("invalid params"))
            return
        try:
            result = await handler(request_id, params)
        except ApiError as exc:
            self._respond(request_id, error=exc)
        except ValueError as exc:
            self._respond(request_id, error=_bad(str(exc)))
        except Exception as exc:
            log.exception("%s failed", method)
            self._respond(request_id, error=ApiError(500, str(exc) or type(exc).__name__))
        else:
            if result is not _DEFERRED:
                self._respond(request_id, result)

    # -- output -------------------------------------------------------------------------------

    def _respond(
        self, request_id: int, result: Any = None, *, error: ApiError | None = None
    ) -> None:
        msg: dict[str, Any] = {"requestid": request_id, "isresponse": True}
        if error is not None:
            msg["error"] = {"code": error.code, "message": error.message}
        else:
            msg["result"] = result
        self._queue(msg)

    def _push(self, method: str, params: dict[str, Any]) -> None:
        self._queue(
            {"requestid": self._push_id, "method": method, "params": params, "isresponse": False}
        )
        self._push_id += 1

    def _queue(self, msg: dict[str, Any]) -> None:
        if self._close_reason:
            return
        text = json.dumps(msg, separators=(",", ":"))
        if self._out_bytes and self._out_bytes + len(text) > OUTBOX_BYTES:
            self._too_slow(f"client is not reading: over {OUTBOX_BYTES} bytes waiting for it")
            return
        try:
            self._out_send.send_nowait(text)
        except trio.WouldBlock:
            self._too_slow(f"client is not reading: {OUTBOX} messages waiting for it")
            return
        self._out_bytes += len(text)

    def _too_slow(self, reason: str) -> None:
        log.error("closing a WebSocket client: %s", reason)
        self._close_reason = reason
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _writer(self) -> None:
        async for text in self._out_recv:
            try:
                await self.conn.send_message(text)
            except ConnectionClosed:
                return
            self._out_bytes -= len(text)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, PeerData):
            self._push(
                "peerData", {"peer": event.peer, "protocol": event.protocol, "data": event.data}
            )
        elif isinstance(event, TopicData):
            self._push(
                "topicData", {"topic": event.topic, "peerid": event.peer, "data": event.data}
            )
        elif isinstance(event, PeerChange):
            self._push(
                "peerChange", {"topic": event.topic, "peerid": event.peer, "joined": event.joined}
            )
        elif isinstance(event, PeerFiles):
            waiting = self._listing.pop(event.peer, [])
            if event.error:
                # As the Go server does when a listing cannot be had: an error answer to the
                # request — never a push of an empty tree the app would take for the truth.
                for request_id in waiting:
                    self._respond(request_id, error=ApiError(500, event.error))
                return
            self._push(
                "peerFiles", {"peerid": event.peer, "cid": event.cid, "entries": event.entries}
            )
            for request_id in waiting:
                self._respond(request_id, None)
        elif isinstance(event, GotFile):
            self._push(
                "gotFile", {"cid": event.cid, "success": event.success, "content": event.content}
            )
        elif isinstance(event, PeerFailed):
            # Extension: this connection's peer is gone (never a zombie that still answers);
            # the client may call `peer` again for a new one.
            self.peer = None
            self._push("peerFailed", {"error": event.error})

    # -- methods ------------------------------------------------------------------------------

    def _require_peer(self) -> Peer:
        if self.peer is None:
            raise ApiError(404, "no peer on this connection yet: call peer first")
        return self.peer

    async def _peer(self, _rid: int, params: dict[str, Any]) -> Any:
        if self.peer is not None:
            raise ApiError(500, "peer already initialized")
        key_text = _str(params, "peerkey", optional=True)
        root = _str(params, "rootDirectory", optional=True)
        try:
            key_pair = identity.import_key(key_text) if key_text else None
        except identity.IdentityError as exc:
            raise _bad(f"invalid peerkey: {exc}") from exc
        if self.conn.closed is not None:  # the client left while this request waited
            raise ApiError(500, "connection closed before the peer was made")
        try:
            self.peer = await self.manager.create_peer(key_pair, self._on_event)
        except PeerInUse as exc:
            raise ApiError(500, f"duplicate peer: {exc}") from exc
        except TooManyPeers as exc:
            raise ApiError(500, f"too many peers: {exc}") from exc
        if root:
            try:
                await self.peer.require_files().restore(root)
            except Exception as exc:
                log.warning("rootDirectory %s not restored: %s", root, exc)
        return {
            "peerid": str(self.peer.peer_id),
            "peerkey": identity.export_key(self.peer.key_pair),
            "version": __version__,
        }

    async def _start(self, _rid: int, params: dict[str, Any]) -> Any:
        protocol = _str(params, "protocol")
        if not self._require_peer().start_protocol(protocol):
            raise ApiError(500, f"already started protocol: {protocol}")
        return None

    async def _stop(self, _rid: int, params: dict[str, Any]) -> Any:
        self._require_peer().stop_protocol(_str(params, "protocol"))
        return None

    async def _send(self, request_id: int, params: dict[str, Any]) -> Any:
        peer = self._require_peer()
        target, protocol = _str(params, "peer"), _str(params, "protocol")
        if "data" not in params:
            raise _bad("invalid params: data is missing")
        ack = params.get("ack", -1)
        if not isinstance(ack, int) or isinstance(ack, bool):
            raise _bad("invalid params: ack must be an integer")
        try:
            msg = peer.enqueue(target, protocol, params["data"])  # in request order
        except QueueFull as exc:
            raise ApiError(500, f"send queue full: {exc}") from exc

        async def outcome() -> None:
            try:
                await msg.wait()
            except DeliveryFailed as exc:
                self._push(
                    "sendFailed",
                    {"ack": ack, "peer": target, "protocol": protocol, "error": str(exc)},
                )
                self._respond(request_id, error=ApiError(500, str(exc)))
                return
            if ack >= 0:
                self._push("ack", {"ack": ack})
            self._respond(request_id, None)

        assert self._nursery is not None
        self._nursery.start_soon(outcome)
        return _DEFERRED

    async def _subscribe(self, request_id: int, params: dict[str, Any]) -> Any:
        peer = self._require_peer()
        topic = _str(params, "topic")

        async def subscribe() -> None:
            try:
                await peer.subscribe(topic)
                peer.monitor(topic)
            except ValueError as exc:
                self._respond(request_id, error=_bad(str(exc)))
            except Exception as exc:
                self._respond(request_id, error=ApiError(500, str(exc)))
            else:
                self._respond(request_id, None)

        assert self._nursery is not None
        self._nursery.start_soon(subscribe)
        return _DEFERRED

    async def _publish(self, _rid: int, params: dict[str, Any]) -> Any:
        if "data" not in params:
            raise _bad("invalid params: data is missing")
        sent_to = await self._require_peer().publish(_str(params, "topic"), params["data"])
        # Extension: p2p-webapp answers null; old clients ignore the field.
        return {"peers": sent_to}

    async def _unsubscribe(self, _rid: int, params: dict[str, Any]) -> Any:
        peer = self._require_peer()
        topic = _str(params, "topic")
        await peer.unsubscribe(topic)
        peer.stop_monitor(topic)
        return None

    async def _listpeers(self, _rid: int, params: dict[str, Any]) -> Any:
        return {"peers": self._require_peer().list_peers(_str(params, "topic"))}

    async def _addpeers(self, _rid: int, params: dict[str, Any]) -> Any:
        errors = self._require_peer().add_peers(_str_list(params, "peerIds"))
        for entry, why in errors.items():
            log.warning("addpeers: skipped %s: %s", entry, why)
        return None

    async def _removepeers(self, _rid: int, params: dict[str, Any]) -> Any:
        self._require_peer().remove_peers(_str_list(params, "peerIds"))
        return None

    async def _monitor(self, _rid: int, params: dict[str, Any]) -> Any:
        self._require_peer().monitor(_str(params, "topic"))
        return None

    async def _stopmonitor(self, _rid: int, params: dict[str, Any]) -> Any:
        self._require_peer().stop_monitor(_str(params, "topic"))
        return None

    async def _storefile(self, _rid: int, params: dict[str, Any]) -> Any:
        files = self._require_peer().require_files()
        path = _str(params, "path")
        directory = params.get("directory", False)
        if not isinstance(directory, bool):
            raise _bad("invalid params: directory must be a boolean")
        if directory:
            file_cid, root_cid = await files.mkdir(path)
        elif isinstance(params.get("content"), wsmessages.BigString):
            file_cid, root_cid = await self._store_big(files, path, params["content"])
        else:
            content = params.get("content")
            if content is None:
                content = ""
            if not isinstance(content, str):
                raise _bad("invalid params: content must be base64 text")
            try:
                data = base64.b64decode(content, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise _bad("invalid base64 content") from exc
            file_cid, root_cid = await files.store_file(path, data, total=len(data))
        return {"fileCid": file_cid, "rootCid": root_cid}

    @staticmethod
    async def _store_big(files: Any, path: str, content: wsmessages.BigString) -> tuple[str, str]:
        """Decode the spooled base64 to a temporary file and import from there: the file is
        never whole in memory."""
        with tempfile.TemporaryFile() as raw:
            try:
                size = await trio.to_thread.run_sync(content.decode_base64_to, raw)
            except ValueError as exc:
                raise _bad(str(exc)) from exc
            raw.seek(0)
            stored: tuple[str, str] = await files.store_file(path, raw, total=size)
            return stored

    async def _removefile(self, _rid: int, params: dict[str, Any]) -> Any:
        await self._require_peer().require_files().remove(_str(params, "path"))
        return None

    async def _listfiles(self, request_id: int, params: dict[str, Any]) -> Any:
        """Answered when the listing is in (after its ``peerFiles`` push) or has failed."""
        peer = self._require_peer()
        target = _str(params, "peerid")
        if target != str(peer.peer_id):
            identity.parse_peer_id(target)
        files = peer.require_files()
        self._listing.setdefault(target, []).append(request_id)
        files.list_files(target)
        return _DEFERRED

    async def _getfile(self, _rid: int, params: dict[str, Any]) -> Any:
        peer = self._require_peer()
        cid = _str(params, "cid")
        fallback = _str(params, "fallbackPeerID", optional=True)
        if fallback:
            identity.parse_peer_id(fallback)
        peer.require_files().get_file(cid, fallback)
        return None

    async def _connect(self, _rid: int, params: dict[str, Any]) -> Any:
        try:
            return {"peerid": await self._require_peer().connect(_str(params, "addr"))}
        except ConnectionError as exc:
            raise ApiError(500, str(exc)) from exc

    async def _info(self, _rid: int, params: dict[str, Any]) -> Any:
        return self._require_peer().info()


def _load_whole(message: wsmessages.Spooled) -> dict[str, Any]:
    message.file.seek(0)
    value = loads(message.file.read())
    if not isinstance(value, dict):
        raise ValueError("a request is a JSON object")
    return value


def _has_big_string(value: Any) -> bool:
    if isinstance(value, wsmessages.BigString):
        return True
    if isinstance(value, dict):
        return any(_has_big_string(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_big_string(v) for v in value)
    return False


_DEFERRED = object()
"""A handler's result meaning "the response is sent later by a task of its own"."""
