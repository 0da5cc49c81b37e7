"""Connects the Files pane to the peer through its ``PeerClient``: listings, drops (folders
recursively), folders, deletes, saves and opens, each long job with a progress row that can
cancel it and a row in the Transfers pane (``models/transfers.py``) that stays when it ends."""

from __future__ import annotations

import asyncio
import itertools
import logging
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMessageBox, QWidget

from core import events as ev
from gui.client import PeerClient
from gui.models.transfers import TransfersModel
from gui.panes.chat import is_file_notice
from gui.panes.files import OWN, FilesPane

log = logging.getLogger(__name__)

_ops = itertools.count(1)


def plan_drop(folder: str, paths: list[Path]) -> tuple[list[str], list[tuple[str, Path]]]:
    """Folders to create and files to store (tree path, local path) for a drop on ``folder``."""
    jobs: list[tuple[str, Path]] = []
    dirs: list[str] = []
    for path in paths:
        base = f"{folder}/{path.name}" if folder else path.name
        if path.is_dir():
            dirs.append(base)
            for sub in sorted(path.rglob("*")):
                rel = f"{base}/{sub.relative_to(path).as_posix()}"
                if sub.is_dir():
                    dirs.append(rel)
                elif sub.is_file():
                    jobs.append((rel, sub))
        elif path.is_file():
            jobs.append((base, path))
    return dirs, jobs


class FilesController(QObject):
    def __init__(
        self,
        pane: FilesPane,
        client: PeerClient,
        window: QMainWindow,
        run: Callable[..., None],
        notify: Callable[[str, str], None],
        transfers: TransfersModel,
    ) -> None:
        super().__init__(window)
        self.pane = pane
        self.transfers = transfers
        self.client = client
        self.window = window
        self.run = run
        self.notify = notify
        self.own_id = ""
        self.last_got: ev.GotFile | None = None
        self.dialog: QWidget | None = None
        self._disk = ThreadPoolExecutor(1, thread_name_prefix="files-plan")
        self._cancelled: set[str] = set()
        """Imports the user cancelled (their failure is then no error)."""
        self._open_dir: Path | None = None
        """Where files opened from the tree are written: made on the first open (one per
        window had left an empty folder in /tmp for every start)."""
        pane.sourceChanged.connect(lambda _peer: self.refresh())
        pane.refreshRequested.connect(self.refresh)
        pane.dropped.connect(self.store_paths)
        pane.newFolder.connect(self.mkdir)
        pane.deleteRequested.connect(self.delete)
        pane.saveRequested.connect(self.save)
        pane.openRequested.connect(self.open)
        pane.getByCid.connect(self.get_by_cid)
        transfers.dataChanged.connect(self._show_progress)

    # -- listings -----------------------------------------------------------------------------

    def refresh(self) -> None:
        if not self.client.has_files:
            return
        source = self.pane.current_source
        if source == OWN:
            self.run(self._show_own(), what="list your files")
        else:
            self.run(self.client.list_peer_files(source), what="list that peer's files")

    async def _show_own(self) -> None:
        listing = await self.client.list_own_files()
        if self.pane.current_source == OWN:
            self.pane.show_listing(listing.root, listing.wire(), read_only=False)

    def on_event(self, event: Any) -> None:
        if isinstance(event, ev.FilesChanged) and self.pane.current_source == OWN:
            self.refresh()
        elif isinstance(event, ev.PeerFiles) and event.peer == self.pane.current_source:
            if event.error:
                self.pane.root_label.setText(f"Could not list that peer's files: {event.error}")
            else:
                self.pane.show_listing(event.cid, event.entries, read_only=True)
        elif isinstance(event, ev.Progress):
            self.transfers.progress(event.op, event.done, event.total)
        elif isinstance(event, ev.GotFile):
            self._got_file(event)
        elif isinstance(event, ev.TopicData) and is_file_notice(event.data):
            peer = str(event.data.get("peer", ""))
            if peer and peer == self.pane.current_source:
                self.refresh()
            if peer and peer != self.own_id:
                self.notify("Files changed", f"{peer[:12]}… updated their files")

    def _show_progress(self, *_changed: object) -> None:
        """The Files pane's progress rows say what their jobs' Transfers rows say (the model
        measures speed and time left; it changes on each report and once a second)."""
        now = self.transfers.clock()
        for op, row in self.pane.progress.items():
            job = self.transfers.find(op)
            if job is not None:
                row.show_progress(job.fraction, job.amount_text(), job.pace_text(now))

    # -- changes ------------------------------------------------------------------------------

    def store_paths(self, folder: str, paths: list[Path]) -> None:
        """Store dropped files; folders go in recursively, keeping their structure."""

        async def go() -> None:
            # Walking a big folder is disk work, not GUI work: a worker thread does it.
            dirs, jobs = await asyncio.wrap_future(self._disk.submit(plan_drop, folder, paths))
            await self._store_all(dirs, jobs)
            await self._show_own()

        self.run(go(), what="store the dropped files")

    async def _store_all(self, dirs: list[str], jobs: list[tuple[str, Path]]) -> None:
        """Every file is listed as queued at once; they go in one after another. Cancelling
        the running one stops the rest of the drop, cancelling a queued one skips it."""
        for path in dirs:
            await self.client.mkdir(path)
        queued = []
        for tree_path, local in jobs:
            op = f"gui-store:{next(_ops)}"
            self.transfers.add(
                op, "Import", tree_path, partial(self._cancel_store, op), total=_size_of(local)
            )
            queued.append((op, tree_path, local))
        for i, (op, tree_path, local) in enumerate(queued):
            if op in self._cancelled:
                self._cancelled.discard(op)
                self.transfers.finish(op, "cancelled")
                continue
            row = self.pane.progress_row(op, f"Adding {tree_path}")
            row.cancelled.connect(lambda op=op: self._cancel_store(op))
            self.transfers.start(op)
            try:
                await self.client.store_file(tree_path, local, op)
                self.transfers.finish(op, "done")
            except Exception as exc:
                if op in self._cancelled:  # the user's own cancel: say so, stop the rest
                    self.transfers.finish(op, "cancelled")
                    for rest, _path, _local in queued[i + 1 :]:
                        self._cancelled.discard(rest)
                        self.transfers.finish(rest, "cancelled")
                    self.window.statusBar().showMessage(f"Cancelled: adding {tree_path}", 8000)
                    return
                self.transfers.finish(op, "failed", str(exc))
                for rest, _path, _local in queued[i + 1 :]:
                    self.transfers.finish(rest, "failed", "an earlier file of the drop failed")
                raise
            finally:
                self._cancelled.discard(op)
                self.pane.finish_progress(op)

    def _cancel_store(self, op: str) -> None:
        self._cancelled.add(op)
        job = self.transfers.find(op)
        if job is not None and job.state == "running":
            self.client.cancel_store(op)

    def mkdir(self, path: str) -> None:
        """An empty folder changes no file, so nothing else would show it: list again now."""

        async def go() -> None:
            await self.client.mkdir(path)
            await self._show_own()

        self.run(go(), what=f"create folder {path}")

    def delete(self, paths: list[str]) -> None:
        async def go() -> None:
            for path in paths:
                await self.client.remove(path)

        self.run(go(), what="delete")

    # -- getting out --------------------------------------------------------------------------

    def save(self, cid: str, dest: str, peer: str) -> None:
        self.run(self._save(cid, Path(dest), peer), what=f"save {Path(dest).name}")

    async def _save(self, cid: str, dest: Path, peer: str, size: int = 0) -> Path:
        """Cancel stops the transfer in the core (the asyncio future's cancellation reaches
        the trio task); nothing is left under the destination name. ``size``: the bytes
        expected, when known other than from the listing (a get by CID's answer)."""
        op = f"gui-save:{next(_ops)}"
        row = self.pane.progress_row(op, f"Saving {dest.name}")
        future = asyncio.ensure_future(self.client.save(cid, dest, peer, op))
        row.cancelled.connect(future.cancel)
        total = size or self._known_size(cid)
        self.transfers.add(op, "Download", dest.name, future.cancel, total=total, where=str(dest))
        self.transfers.start(op)
        await self._tracked(op, future, sized=True)
        return dest

    async def _tracked(self, op: str, future: asyncio.Future[Any], *, sized: bool = False) -> None:
        """Await a transfer and end its Transfers row (``sized``: the future's result is the
        byte count it ended with) and its progress row, however it ends."""
        try:
            result = await future
            self.transfers.finish(op, "done", size=result if sized else None)
        except asyncio.CancelledError:
            self.transfers.finish(op, "cancelled")
            raise
        except Exception as exc:
            self.transfers.finish(op, "failed", str(exc))
            raise
        finally:
            self.pane.finish_progress(op)

    def _known_size(self, cid: str) -> int:
        """The size the listing gave for ``cid`` (a fetch learns it only as blocks come)."""
        stack = [self.pane.model.root]
        while stack:
            node = stack.pop()
            if node.cid == cid and node.size:
                return node.size
            stack += node.children
        return 0

    def open(self, cid: str, name: str, peer: str) -> None:
        async def go() -> None:
            if self._open_dir is None:
                self._open_dir = Path(tempfile.mkdtemp(prefix="peerdesk-open-"))
            target = self._open_dir / cid
            target.mkdir(exist_ok=True)
            path = await self._save(cid, target / name, peer)
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

        self.run(go(), what=f"open {name}")

    def open_cid(self, cid: str) -> None:
        """An ipfs:// link: fetch it (now, or as soon as the peer is up) and offer it."""
        self.pane.cid_input.setText(cid)
        dock = self.pane.parentWidget()
        if dock is not None:
            dock.show()
            dock.raise_()
        if not self.client.running:
            self.client.online.connect(
                lambda _p: self.get_by_cid(cid, ""), Qt.ConnectionType.SingleShotConnection
            )
        else:
            self.get_by_cid(cid, "")

    def get_by_cid(self, cid: str, fallback: str) -> None:
        """A progress row with Cancel while the core looks for the CID."""
        if not self.client.running:
            return
        op = f"gui-get:{next(_ops)}"
        row = self.pane.progress_row(op, f"Fetching {cid}")
        future = asyncio.ensure_future(self.client.get_file(cid, fallback, op))
        row.cancelled.connect(future.cancel)
        self.transfers.add(op, "Get", cid, future.cancel)
        self.transfers.start(op)
        self.run(self._tracked(op, future), what=f"get {cid}")

    def _got_file(self, event: ev.GotFile) -> None:
        """Non-modal: the window keeps working while the user decides."""
        self.last_got = event
        self.refresh()  # puts the listing's line back in place of "Fetching …"
        job = self.transfers.newest("Get", event.cid)
        if not event.success:
            reason = _failure(event.cid, str(event.content.get("error") or ""))
            if job is not None:
                self.transfers.finish(job.op, "failed", reason)
            hint = (
                "\n\nAsk someone who has it to connect to you, or give their peer id as the "
                "fallback peer."
                if "no peer provided it" in reason
                else ""
            )
            self._message(
                QMessageBox.Icon.Warning,
                "Get by CID",
                f"Could not get\n{event.cid}\n\n{reason[:1].upper()}{reason[1:]}.{hint}",
            )
            return
        content = event.content
        if content.get("type") == "directory":
            names = "\n".join(sorted(content.get("entries", {}))[:50])
            self._message(QMessageBox.Icon.Information, "Folder", f"{event.cid} holds:\n{names}")
            return
        self.notify("File received", event.cid)
        name = _safe_name(str(content.get("name") or "")) or f"{event.cid}{_extension(content)}"
        kind = str(content.get("mimeType") or "unknown type").split(";")[0]
        size = content.get("size")
        size = size if type(size) is int and size >= 0 else 0
        dialog = QFileDialog(
            self.window,
            f"Save received file ({_size(size)}, {kind})",
            str(self.pane.download_dir() / name),
        )
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)

        def save(dest: str) -> None:
            """Its blocks are here now: saving streams them into the file (a Download row)."""
            coro = self._save(event.cid, Path(dest), "", size)
            self.run(coro, what=f"save {Path(dest).name}")

        dialog.fileSelected.connect(save)
        dialog.open()
        self.dialog = dialog

    def _message(self, icon: QMessageBox.Icon, title: str, text: str) -> None:
        box = QMessageBox(icon, title, text, QMessageBox.StandardButton.Ok, self.window)
        box.open()
        self.dialog = box


EXTENSIONS = {
    "text/plain": ".txt",
    "text/html": ".html",
    "application/json": ".json",
    "application/pdf": ".pdf",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "application/zip": ".zip",
}


def _extension(content: dict[str, Any]) -> str:
    mime = str(content.get("mimeType") or "").split(";")[0].strip()
    return EXTENSIONS.get(mime, "")


def _failure(cid: str, error: str) -> str:
    """The core's reason without the CID it starts with (the window shows the CID once):
    "bafy… is not stored here" becomes "it is not stored here"."""
    reason = error.removeprefix(cid).strip(" :.") if error else ""
    if reason.startswith("is ") and reason != error:
        reason = f"it {reason}"
    return reason or "no reason given"


def _safe_name(name: str) -> str:
    """A name from another peer, usable as a file name here (no folders, no dot-names)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return "" if base in ("", ".", "..") else base


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value = n / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
