"""Entry point of the packaged application (PyInstaller)."""

import multiprocessing
import os
import sys
from pathlib import Path

if __name__ == "__main__":
    multiprocessing.freeze_support()     # the GUI's training worker is a spawned process
    # numba caches compiled code beside the sources by default, which a frozen app cannot write:
    # here it goes to the user's cache.  This works because inspector.spec ships core/coreset.py's
    # source (numba keys its cache on the source file; without one it compiles at every start).
    os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "inspector" / "numba"))
    from inspector.cli import main
    sys.exit(main())
