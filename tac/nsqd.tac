# A deployment example: `twistd -ny tac/nsqd.tac` runs nsqd in the foreground (drop -n to
# daemonize). Data goes in the current directory; nsqd listens on 0.0.0.0:4150 (TCP) and
# 0.0.0.0:4151 (HTTP). To change them, pass keyword arguments to Options, e.g.
#     Options(tcp_address="127.0.0.1:5150", http_address="127.0.0.1:5151", data_path="/var/lib/nsq")
# Every flag of `twistd nsqtx --help` but those of the features nsqtx lacks (TLS, statsd, ...) is
# accepted here, with underscores instead of dashes and durations as float seconds (msg_timeout=90.0).
from twisted.application import service

from twisted.internet import reactor

from nsqtx import Options
from nsqtx.tap import server_service

options = Options()

application = service.Application("nsqd")
# The service tree `twistd nsqtx` runs: a start-up error is one line on stderr and exit status 1,
# the interpreter is tuned for a server (nsqtx.tuning), and SIGTERM/SIGINT stop cleanly and exit 0.
server_service(options, reactor).setServiceParent(application)
