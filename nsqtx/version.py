"""Versions: our own, and the nsqd and nsqlookupd release whose wire behaviour we promise."""

__version__ = "0.1.0"

#: Reported to clients (IDENTIFY, /info, /stats) so they enable the NSQ 1.3 feature set.
NSQD_VERSION = "1.3.0"

#: nsqlookupd's, of the same release: reported in its IDENTIFY reply and /info.
NSQLOOKUPD_VERSION = NSQD_VERSION
