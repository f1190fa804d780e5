"""twistd's entry points for nsqtx: `twistd nsqtx` (nsqd) and `twistd nsqtx-lookupd` (nsqlookupd). Kept
import-light so listing plugins stays cheap."""
from twisted.application.service import ServiceMaker

nsqtx = ServiceMaker(
    "nsqtx",
    "nsqtx.tap",
    "NSQ nsqd (protocol V2, wire-compatible with NSQ 1.3)",
    "nsqtx",
)

nsqtx_lookupd = ServiceMaker(
    "nsqtx-lookupd",
    "nsqtx.lookupd.tap",
    "NSQ nsqlookupd (protocol V1 and HTTP API, wire-compatible with NSQ 1.3)",
    "nsqtx-lookupd",
)
