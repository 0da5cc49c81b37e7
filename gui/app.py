"""``peerdesk`` with no arguments: the desktop app.

The window is shown first and the network started behind it (py-libp2p takes ~1 s to import),
so the app is on screen at once and says "Starting…" until the peer is up.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import sys
from dataclasses import replace
from pathlib import Path

import qasync
from PySide6.QtCore import QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QFileDialog, QMenu, QMessageBox, QSystemTrayIcon

from core.profile.location import default_data_dir
from core.profile.settings import Settings
from core.snapshots import PeerIdentity
from gui.bridge import CoreBridge, ProfileAccess
from gui.links import LinkError, LinkServer, forward, parse_link
from gui.mainwindow import MainWindow
from gui.panes.log import LogView, QtLogHandler

log = logging.getLogger(__name__)

APP_ID = "io.github.peerdesk.Peerdesk"
try:  # packaging/build.sh compiles resources/peerdesk.qrc into this module for the frozen app
    import peerdesk_rc  # noqa: F401  (registers the resource on import)

    ICON = ":/io.github.peerdesk.Peerdesk/peerdesk.svg"
except ImportError:  # from the source tree
    ICON = str(Path(__file__).resolve().parent.parent / "resources" / "peerdesk.svg")


class App:
    """Owns the window, the tray icon and the core; restarts the core when the identity or
    the network settings change."""

    def __init__(
        self, data_dir: Path, *, no_bootstrap: bool = False, no_mdns: bool = False
    ) -> None:
        self.data_dir = data_dir
        self.no_bootstrap = no_bootstrap
        self.no_mdns = no_mdns
        data_dir.mkdir(parents=True, exist_ok=True)
        self.handler = QtLogHandler()
        _info_to_the_log_pane(self.handler)
        self.bridge = CoreBridge()
        self.window = MainWindow(self.bridge, data_dir, LogView(self.handler))
        self.window.setWindowIcon(QIcon(ICON))
        self.window.settings_action.triggered.connect(self.open_settings)
        self.window.transfers.changeDownloadFolder.connect(self._pick_download_folder)
        self.settings: Settings | None = None
        self.tray = self._tray()
        self.window.notify.connect(self._notify)
        self.bridge.online.connect(lambda _me: self.window.set_protocol(self.window.protocol))
        self.bridge.online.connect(self._announce)

    def _tray(self) -> QSystemTrayIcon | None:
        if not QSystemTrayIcon.isSystemTrayAvailable():
            return None
        tray = QSystemTrayIcon(QIcon(ICON), self.window)
        menu = QMenu()
        menu.addAction("Show Peerdesk", self.window.show_window)
        menu.addAction("Quit", self.window.quit)
        tray.setContextMenu(menu)
        tray.activated.connect(self._tray_clicked)
        tray.setToolTip("Peerdesk — starting…")
        self.window.stateChanged.connect(lambda state: tray.setToolTip(f"Peerdesk — {state}"))
        tray.show()
        return tray

    def _apply_window_settings(self) -> None:
        if self.settings is None:
            return
        self.window.close_to_tray = bool(self.tray is not None and self.settings.close_to_tray)
        folder = self.settings.download_dir
        self.window.files_pane.downloads = Path(folder).expanduser() if folder else None
        self.window.transfers.set_download_folder(str(self.window.files_pane.download_dir()))
        self.window.peers.own_name = self.settings.display_name

    def _pick_download_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self.window, "Download folder", str(self.window.files_pane.download_dir())
        )
        if folder:
            self.set_download_folder(Path(folder))

    def set_download_folder(self, folder: Path) -> None:
        """The Transfers pane's Download folder…: saved in the settings, used at once."""
        profile = ProfileAccess(self.data_dir)
        self.settings = replace(profile.load_settings(), download_dir=str(folder))
        profile.save_settings(self.settings)
        self._apply_window_settings()

    def _tray_clicked(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:  # a left click
            self.window.toggle_window()

    def _notify(self, title: str, text: str) -> None:
        if self.tray is not None and (self.settings is None or self.settings.notifications):
            self.tray.showMessage(title, text[:200], QIcon(ICON), 5000)

    def start_core(self) -> None:
        """Build the profile's peer (importing py-libp2p now, behind the visible window)."""
        profile = ProfileAccess(self.data_dir)
        self.settings = settings = profile.load_settings()
        self._apply_window_settings()
        self.window.has_bootstrap = bool(settings.bootstrap) and not self.no_bootstrap
        launch = self.bridge.start_profile(
            profile, settings, no_bootstrap=self.no_bootstrap, no_mdns=self.no_mdns
        )
        if launch.notice:
            self.window.statusBar().showMessage(launch.notice, 20000)

    def open_link(self, link: str) -> None:
        """Show an ``ipfs://`` link in the Files pane (once the peer is up)."""
        try:
            scheme, name, path = parse_link(link)
        except LinkError as exc:
            self.window.statusBar().showMessage(str(exc), 10000)
            return
        self.window.show_window()
        if scheme == "ipns":
            QMessageBox.information(
                self.window, "Peerdesk", "IPNS names cannot be resolved yet; open an /ipfs/ link."
            )
            return
        if path:
            self.window.statusBar().showMessage(
                f"Opening {name}; paths inside it ({path}) are shown from its folder", 8000
            )
        self.window.files.open_cid(name)

    def _announce(self, me: PeerIdentity) -> None:
        """One line on stdout once online: scripts and the packaging smoke test read it."""
        print(
            json.dumps({"event": "online", "peerid": me.peer_id, "addrs": list(me.addrs)}),
            flush=True,
        )

    def restart_core(self) -> None:
        self.bridge.stop()
        self.window.state_label.setText("Restarting…")
        self.start_core()

    def open_settings(self) -> None:
        from gui.dialogs.settings import SettingsDialog

        dialog = SettingsDialog(self.data_dir, self.window)
        if not dialog.exec():
            return
        self.settings = dialog.value()  # notifications and close-to-tray apply at once
        self._apply_window_settings()
        if dialog.needs_restart:
            self.restart_core()

    def shutdown(self) -> None:
        self.window.history.commit()
        self.bridge.stop()
        if self.tray is not None:
            self.tray.hide()


def _info_to_the_log_pane(handler: logging.Handler) -> None:
    """The Log pane shows INFO without ``-v``: the root logger lets INFO through and the
    terminal's handlers keep the level the command line chose."""
    root = logging.getLogger()
    level = root.getEffectiveLevel()
    if level > logging.INFO:
        for other in root.handlers:
            if other.level < level:
                other.setLevel(level)
        root.setLevel(logging.INFO)
    handler.setLevel(logging.INFO if level >= logging.INFO else level)
    root.addHandler(handler)


def _close_on_signal(window: MainWindow, closed: asyncio.Event) -> None:
    window.quit()
    closed.set()


def main(
    data_dir: Path | None = None,
    link: str = "",
    *,
    no_bootstrap: bool = False,
    no_mdns: bool = False,
) -> int:
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv)
    app.setApplicationName("Peerdesk")
    app.setApplicationDisplayName("Peerdesk")
    app.setDesktopFileName(APP_ID)
    data_dir = data_dir or default_data_dir()
    if link and forward(data_dir, link):
        return 0  # the running Peerdesk opens it
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    peerdesk = App(data_dir, no_bootstrap=no_bootstrap, no_mdns=no_mdns)
    links = LinkServer(data_dir, peerdesk.open_link)
    peerdesk.window.show()
    QTimer.singleShot(0, peerdesk.start_core)
    if link:
        peerdesk.open_link(link)
    closed = asyncio.Event()
    app.lastWindowClosed.connect(closed.set)
    for signum in (signal.SIGINT, signal.SIGTERM):  # logout, kill, Ctrl+C: as closing the window
        loop.add_signal_handler(signum, _close_on_signal, peerdesk.window, closed)
    with loop:
        loop.run_until_complete(closed.wait())
    links.server.close()
    peerdesk.shutdown()
    gc.collect()
    return 0
