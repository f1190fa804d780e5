"""nsqtx: NSQ's nsqd, wire-compatible with NSQ 1.3, on Twisted.

Embed a broker with :class:`nsqtx.node.NSQD` and :class:`nsqtx.options.Options`, nsqlookupd with
``Lookupd`` (:class:`nsqtx.lookupd.node.NSQLookupd`) and :class:`nsqtx.lookupd.options.LookupdOptions`.
"""
import importlib

from nsqtx.version import __version__

__all__ = ["__version__", "NSQD", "Options", "Lookupd", "LookupdOptions"]

#: exported name -> the module that defines it
_EXPORTS = {"NSQD": ("nsqtx.node", "NSQD"), "Options": ("nsqtx.options", "Options"),
            "Lookupd": ("nsqtx.lookupd.node", "NSQLookupd"), "LookupdOptions": ("nsqtx.lookupd.options", "LookupdOptions")}


def lazy_export(exports: dict, name: str):
    """`name` as `exports` says where it is defined (module, name there), imported only now, so that
    `import nsqtx` (e.g. from setup.py or the twistd plugin listing) does not pull in the reactor."""
    if name not in exports:
        raise AttributeError(name)
    module, defined_as = exports[name]
    return getattr(importlib.import_module(module), defined_as)


def __getattr__(name):
    return lazy_export(_EXPORTS, name)
