"""`python -m nsqtx [nsqd flags]`: the node in the foreground, as `twistd -n nsqtx` runs it, but
without a pidfile, so that any number of servers may start from one directory (each with its own
--data-path and ports)."""
import sys

from twisted.scripts.twistd import run


def main() -> None:
    sys.argv[1:] = ["--nodaemon", "--pidfile=", "nsqtx"] + sys.argv[1:]
    run()


if __name__ == "__main__":
    main()
