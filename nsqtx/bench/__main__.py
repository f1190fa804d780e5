"""``python -m nsqtx.bench``: the options are in :mod:`nsqtx.bench.cli`."""
import sys

from nsqtx.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
