"""nsqtx: NSQ's nsqd, wire-compatible with NSQ 1.3, on Twisted.

Embed a broker with :class:`nsqtx.node.NSQD` and :class:`nsqtx.options.Options`.
"""
from nsqtx.version import __version__

__all__ = ["__version__", "NSQD", "Options"]


def __getattr__(name):
    # Imported lazily so that `import nsqtx` (e.g. from setup.py or the twistd
    # plugin listing) does not pull in the reactor.
    if name == "NSQD":
        from nsqtx.node import NSQD

        return NSQD
    if name == "Options":
        from nsqtx.options import Options

        return Options
    raise AttributeError(name)
