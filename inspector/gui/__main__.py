import sys

from .app import main

if __name__ == "__main__":   # worker processes (spawn) import this module again: start nothing there
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
