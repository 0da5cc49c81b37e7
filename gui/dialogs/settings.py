"""Settings: network, discovery, notifications, and the identity (with the care it needs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from core.profile.settings import Settings
from gui.client import ProfileClient

MAX_NAME = 64
"""Characters of your display name (the profile protocol cuts longer names others send)."""
RESTART_FIELDS = (
    "listen_port",
    "quic",
    "bootstrap",
    "mdns",
    "file_update_topic",
    "relays",
    "relay_service",
    "port_mapping",
    "display_name",
)


class SettingsDialog(QDialog):
    def __init__(
        self, data_dir: Path, parent: QWidget | None = None, profile: ProfileClient | None = None
    ) -> None:
        """``profile`` defaults to the profile folder ``data_dir`` itself (tests pass a fake)."""
        super().__init__(parent)
        self.setWindowTitle("Peerdesk settings")
        if profile is None:
            from gui.bridge import ProfileAccess

            profile = ProfileAccess(data_dir)
        self.profile = profile
        self.original = self.profile.load_settings()
        self.needs_restart = False

        self.port = QSpinBox()
        self.port.setRange(0, 65535)
        self.port.setSpecialValueText("any free port")
        self.port.setValue(self.original.listen_port)
        self.quic = QCheckBox("Listen on QUIC too (UDP, the same port number as TCP)")
        self.quic.setChecked(self.original.quic)
        quic_hint = QLabel(
            "QUIC gets through more home routers (hole punching works better over UDP); "
            "peers that offer both are dialled over TCP first. Turn it off on networks "
            "that drop UDP."
        )
        quic_hint.setWordWrap(True)
        quic_hint.setEnabled(False)  # drawn greyed: an explanation, not a control
        self.bootstrap = QPlainTextEdit("\n".join(self.original.bootstrap))
        self.bootstrap.setPlaceholderText("One multiaddr per line; empty = no internet DHT")
        self.bootstrap.setMinimumHeight(110)
        self.relays = QPlainTextEdit("\n".join(self.original.relays))
        self.relays.setPlaceholderText(
            "Relays to use behind a NAT, one /…/p2p/<id> multiaddr per line "
            "(connected peers that offer relaying are used too)"
        )
        self.relays.setMinimumHeight(60)
        self.relay_service = QCheckBox("Relay for peers behind a NAT while this peer is public")
        self.relay_service.setChecked(self.original.relay_service)
        self.port_mapping = QCheckBox("Ask the router to forward the listen port (UPnP)")
        self.port_mapping.setChecked(self.original.port_mapping)
        self.display_name = QLineEdit(self.original.display_name)
        self.display_name.setMaxLength(MAX_NAME)
        self.display_name.setPlaceholderText("none: others see a name derived from your id")
        self.mdns = QCheckBox("Find peers on the local network (mDNS)")
        self.mdns.setChecked(self.original.mdns)
        self.notify_topic = QLineEdit(self.original.file_update_topic)
        self.notify_topic.setPlaceholderText("none")
        self.notifications = QCheckBox("Desktop notifications for messages and files")
        self.notifications.setChecked(self.original.notifications)
        self.close_to_tray = QCheckBox("Closing the window keeps Peerdesk running in the tray")
        self.close_to_tray.setChecked(self.original.close_to_tray)
        self.download_dir = QLineEdit(self.original.download_dir)
        self.download_dir.setPlaceholderText("~/Downloads")
        folder = QLabel(str(self.profile.folder))
        folder.setWordWrap(True)

        key_row = QHBoxLayout()
        export = QPushButton("Export identity…")
        export.clicked.connect(self._export)
        import_ = QPushButton("Import identity…")
        import_.clicked.connect(self._import)
        key_row.addWidget(export)
        key_row.addWidget(import_)
        key_row.addStretch(1)
        self.peer_label = QLabel(self.profile.peer_id())
        self.peer_label.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Your name:", self.display_name)
        form.addRow("Listen port:", self.port)
        form.addRow("", self.quic)
        form.addRow("", quic_hint)
        form.addRow("Bootstrap peers:", self.bootstrap)
        form.addRow("Relays:", self.relays)
        form.addRow("", self.relay_service)
        form.addRow("", self.port_mapping)
        form.addRow("", self.mdns)
        form.addRow("File-update topic:", self.notify_topic)
        form.addRow("", self.notifications)
        form.addRow("", self.close_to_tray)
        form.addRow("Download folder:", self.download_dir)
        form.addRow("Peer id:", self.peer_label)
        form.addRow("Identity:", key_row)
        form.addRow("Data folder:", folder)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.resize(560, 560)

    def value(self) -> Settings:
        bootstrap = [
            line.strip() for line in self.bootstrap.toPlainText().splitlines() if line.strip()
        ]
        relays = [line.strip() for line in self.relays.toPlainText().splitlines() if line.strip()]
        # Fields the dialog does not show (listen addresses, connection limits) keep their
        # saved values.
        return dataclasses.replace(
            self.original,
            display_name=self.display_name.text().strip()[:MAX_NAME],
            listen_port=self.port.value(),
            quic=self.quic.isChecked(),
            bootstrap=bootstrap,
            relays=relays,
            relay_service=self.relay_service.isChecked(),
            port_mapping=self.port_mapping.isChecked(),
            mdns=self.mdns.isChecked(),
            file_update_topic=self.notify_topic.text().strip(),
            notifications=self.notifications.isChecked(),
            close_to_tray=self.close_to_tray.isChecked(),
            download_dir=self.download_dir.text().strip(),
        )

    def accept(self) -> None:
        new = self.value()
        self.profile.save_settings(new)
        self.needs_restart = self.needs_restart or any(
            getattr(new, f) != getattr(self.original, f) for f in RESTART_FIELDS
        )
        super().accept()

    def _export(self) -> None:
        answer = QMessageBox.warning(
            self,
            "Export identity",
            "The exported key IS this peer's identity: anyone who has it can act as you. "
            "Copy it to the clipboard?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        )
        if answer == QMessageBox.StandardButton.Yes:
            QGuiApplication.clipboard().setText(self.profile.export_identity())

    def _import(self) -> None:
        text, ok = QInputDialog.getMultiLineText(
            self,
            "Import identity",
            "Paste a p2p-webapp key (CAESQ…). This replaces the current identity: peers will "
            "see a different peer id. Export the current one first if you may want it back.",
        )
        if not ok or not text.strip():
            return
        try:
            peer_id = self.profile.import_identity(text)
        except ValueError as exc:
            QMessageBox.critical(self, "Import identity", f"That key cannot be used: {exc}")
            return
        self.peer_label.setText(peer_id)
        self.needs_restart = True
