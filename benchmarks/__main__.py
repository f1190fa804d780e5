"""``python -m benchmarks``: the options are in :mod:`benchmarks.cli`."""
import sys

from benchmarks.cli import main

if __name__ == "__main__":
    sys.exit(main())
