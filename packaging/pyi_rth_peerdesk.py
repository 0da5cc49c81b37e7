# PyInstaller run-time hook: runs in the frozen app before Peerdesk's own code.
import os

# qasync picks its Qt binding from QT_API when that is set (some desktops set it for other
# toolkits); the frozen app contains PySide6 only.
os.environ["QT_API"] = "pyside6"

# PyInstaller's bootloader points LD_LIBRARY_PATH at the bundled libraries. The dynamic loader
# read it when this process started, so it can go now: programs that Peerdesk starts (xdg-open
# for "Open" in the Files pane, a browser, another Peerdesk for a link) must get the system's
# libraries, not ours, and a PyInstaller program among them must start afresh.
_orig = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
if _orig is None:
    os.environ.pop("LD_LIBRARY_PATH", None)
else:
    os.environ["LD_LIBRARY_PATH"] = _orig
os.environ["PYINSTALLER_RESET_ENVIRONMENT"] = "1"
del _orig
