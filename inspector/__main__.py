import multiprocessing
import sys

from .cli import main

if __name__ == "__main__":   # worker processes re-import the main module: never re-run the CLI
    multiprocessing.freeze_support()
    sys.exit(main())
