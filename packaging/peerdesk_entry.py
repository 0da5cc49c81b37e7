"""PyInstaller's entry script for the frozen ``peerdesk`` (the same as the ``peerdesk`` console
script, ``gui.cli:main``). Kept in packaging/ so the app's own code knows nothing of freezing."""

import sys

from gui.cli import main

if __name__ == "__main__":
    sys.exit(main())
