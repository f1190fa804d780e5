"""nsqtx: NSQ's nsqd, wire-compatible with NSQ 1.3, on Twisted.

Embed a broker with :class:`nsqtx.node.NSQD` and :class:`nsqtx.options.Options`; nsqlookupd is
:mod:`nsqtx.lookupd`.
"""
import importlib

from nsqtx.version import __version__

__all__ = ["__version__", "NSQD", "Options"]

#: exported name -> the module that defines it
_EXPORTS = {"NSQD": "nsqtx.node", "Options": "nsqtx.options"}


def lazy_export(exports: dict, name: str):
    """`name` from its module in `exports`, imported only now, so that `import nsqtx` (e.g. from
    setup.py or the twistd plugin listing) does not pull in the reactor."""
    if name not in exports:
        raise AttributeError(name)
    return getattr(importlib.import_module(exports[name]), name)


def __getattr__(name):
    return lazy_export(_EXPORTS, name)
