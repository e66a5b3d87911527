"""Entry point of the packaged application (PyInstaller)."""

import multiprocessing
import os
import sys
from pathlib import Path

if __name__ == "__main__":
    multiprocessing.freeze_support()     # the GUI's training worker is a spawned process
    # numba caches compiled code beside the sources by default; a frozen app has none
    os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "inspector" / "numba"))
    from inspector.cli import main
    sys.exit(main())
