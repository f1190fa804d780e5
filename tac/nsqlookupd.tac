# A deployment example: `twistd -ny tac/nsqlookupd.tac` runs nsqlookupd in the foreground (drop -n to
# daemonize). It listens on 0.0.0.0:4160 (TCP, for nsqd nodes) and 0.0.0.0:4161 (HTTP, for consumers
# and nsqadmin). To change them, pass keyword arguments to LookupdOptions, e.g.
#     LookupdOptions(tcp_address="127.0.0.1:5160", http_address="127.0.0.1:5161", broadcast_address="lookupd1")
# Every flag of `twistd nsqtx-lookupd --help` is accepted here, with underscores instead of dashes and
# durations as float seconds (inactive_producer_timeout=600.0).
from twisted.application import service

from twisted.internet import reactor

from nsqtx.lookupd import LookupdOptions
from nsqtx.lookupd.tap import server_service

options = LookupdOptions()

application = service.Application("nsqlookupd")
# The service tree `twistd nsqtx-lookupd` runs: a start-up error is one line on stderr and exit status
# 1, the interpreter is tuned for a server (nsqtx.tuning), and SIGTERM/SIGINT stop cleanly and exit 0.
server_service(options, reactor).setServiceParent(application)
