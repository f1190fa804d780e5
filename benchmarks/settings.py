"""Names and limits that more than one part of the bench relies on."""
import os

#: the source tree the server imports nsqtx from (PYTHONPATH), and whose commit the results name: the
#: repository root, which holds both benchmarks/ and nsqtx/
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOPIC = "bench"
CHANNEL = "bench"
#: nsqd's default --max-rdy-count: what the sub scenario asks for unless given --rdy
SUB_RDY = 2500
#: --transport's choices: how nsqload talks to the server (plain: no IDENTIFY at all, as before there
#: were transports; the others negotiated in IDENTIFY as nsqd 1.3 does)
TRANSPORTS = ("plain", "tls", "snappy", "deflate", "tls+snappy", "tls+deflate")
#: how long one HTTP request to the server may take
PING_TIMEOUT = 5.0
