"""twistd's entry point for nsqtx: `twistd nsqtx`. Kept import-light so listing plugins stays cheap."""
from twisted.application.service import ServiceMaker

nsqtx = ServiceMaker(
    "nsqtx",
    "nsqtx.tap",
    "NSQ nsqd (protocol V2, wire-compatible with NSQ 1.3)",
    "nsqtx",
)
