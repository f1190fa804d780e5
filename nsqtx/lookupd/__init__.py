"""nsqtx-lookupd: NSQ's nsqlookupd, wire-compatible with NSQ 1.3, on Twisted.

Embed one with :class:`nsqtx.lookupd.node.NSQLookupd` and :class:`nsqtx.lookupd.options.LookupdOptions`.
"""
from nsqtx import lazy_export

__all__ = ["NSQLookupd", "LookupdOptions"]

_EXPORTS = {"NSQLookupd": ("nsqtx.lookupd.node", "NSQLookupd"),
            "LookupdOptions": ("nsqtx.lookupd.options", "LookupdOptions")}


def __getattr__(name):
    return lazy_export(_EXPORTS, name)
