# A cluster for local development: `twistd -ny tac/cluster.tac` runs, in one process, nsqlookupd on
# 127.0.0.1:4160 (TCP) and :4161 (HTTP) and two nsqd nodes registered with it, on 127.0.0.1:4150/4151
# and 127.0.0.1:4250/4251, with their data in ./nsqd1 and ./nsqd2 (made if missing). Consumers find
# both nodes through http://127.0.0.1:4161, as a pynsq Reader given lookupd_http_addresses does.
# One process runs on one core: in production, run each server in a process of its own.
import os

from twisted.application import service
from twisted.internet import reactor

from nsqtx import NSQD, Lookupd, LookupdOptions, Options
from nsqtx.server_process import ServerProcess

LOOKUPD_TCP = "127.0.0.1:4160"

cluster = ServerProcess("nsqtx-cluster", reactor)
Lookupd(LookupdOptions(tcp_address=LOOKUPD_TCP, http_address="127.0.0.1:4161",
                       broadcast_address="127.0.0.1")).setServiceParent(cluster)
for name, tcp_port in (("nsqd1", 4150), ("nsqd2", 4250)):
    os.makedirs(name, exist_ok=True)
    options = Options(node_id=tcp_port // 100, tcp_address="127.0.0.1:%d" % tcp_port, http_address="127.0.0.1:%d" % (tcp_port + 1),
                      data_path=name, broadcast_address="127.0.0.1", nsqlookupd_tcp_addresses=[LOOKUPD_TCP])
    node = NSQD(options)
    node.setName(name)
    node.setServiceParent(cluster)

application = service.Application("nsqtx-cluster")
cluster.setServiceParent(application)
