# PyInstaller run-time hook: runs in the frozen app before Peerdesk's own code.
import os

# qasync picks its Qt binding from QT_API when that is set (some desktops set it for other
# toolkits); the frozen app contains PySide6 only.
os.environ["QT_API"] = "pyside6"
