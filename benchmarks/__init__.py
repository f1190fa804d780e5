"""Benchmark an nsqtx server the way a user runs it: ``python -m benchmarks``.

A tool, not a test: nothing in the test suite runs it, and nothing in CI times anything. It is not
part of the nsqtx package (setup.py does not install it): run it from the root of a checkout, where
``python -m benchmarks`` finds it, and ``pydoc benchmarks`` shows this text.

For each scenario it starts a fresh server as a subprocess,
``<python> -m twisted nsqtx --tcp-address=127.0.0.1:<free> --http-address=127.0.0.1:<free>
--mem-queue-size=<n> --data-path=<tmp dir> --log-level=warn``, waits for ``/ping``, drives it with
the neutral C load generator ``nsqload`` (built from ``benchmarks/nsqload.c``, or ``--nsqload-src``,
with ``gcc -O2 -pthread`` into ``~/.cache/nsqtx/``, once per source) and stops it.
All traffic goes to 127.0.0.1.

``--transport LIST`` (default ``plain``) picks how nsqload talks to the servers, from ``plain``,
``tls``, ``snappy``, ``deflate``, ``tls+snappy`` and ``tls+deflate``; each server over each transport
is a row of its own, run in the same rounds as the servers (a runtime's transports one after another).
``plain`` is nsqload as it always was: no IDENTIFY, the same bytes on the wire, so its figures compare
with earlier ones. The others send IDENTIFY with ``feature_negotiation``, check that the server granted
what they asked, and upgrade as nsqd 1.3 does (TLS first, an ``OK`` after each upgrade); snappy is the
framed stream format, deflate raw at level 6 with a sync flush after each write, both ways. The
messages are ``--size`` bytes of ``x``: compression's best case, so snappy and deflate mostly measure
the codecs' CPU cost. For TLS the bench makes a throwaway CA and a certificate for 127.0.0.1 (with
the ``cryptography`` package), starts the servers with ``--tls-cert`` and ``--tls-key`` (Go nsqd takes
the same flags) and nsqload verifies it (``NSQLOAD_TLS_CA``); nsqload offers only AES-128-GCM, so
every server runs the same cipher. nsqload then needs OpenSSL, zlib and snappy (on Debian
``libssl-dev zlib1g-dev libsnappy-dev``) and is built with ``-DNSQLOAD_TRANSPORTS`` and those
libraries into a binary of its own, for every transport of that bench, plain
included. Filling a backlog for ``sub`` and ``mem`` stays plain (it is not measured), and ``mem`` runs
once a server, as the first transport listed, showing no transport.

Scenarios (``--scenarios``, default ``pub,sub,mem``):

``pub``
    MPUB batches of ``--batch`` messages of ``--size`` bytes for ``--seconds``, with each count of
    ``--connections`` (default 1 then 2) on a topic without channels (the topic holds what it gets).
    ``--pub-warmup SECONDS`` first publishes that long on as many connections, unmeasured, with
    ``/ping`` polled: a fresh PyPy server spends its first seconds compiling, and on a slow machine
    that can halve a 4 s figure.
``sub``
    Fill a channel made beforehand (``POST /topic/create``, ``/channel/create``) with ``--messages``
    messages, then consume it with RDY ``--rdy`` (2500) and FIN for ``--seconds``, for each count of
    ``--connections``. A backlog the consumers empty before the time is up (seen in ``/stats``)
    would make the rate a lower bound, so the run is then repeated on a fresh server with a backlog
    sized to last (up to 8 x ``--messages``); the row says so. All connection counts of a runtime
    over a transport consume the same backlog (on PyPy a bigger one is slower to consume): a count measured before
    another raised it runs again, also across ``--repeat`` rounds. ``--sub-warmup SECONDS`` first
    consumes that long from the same backlog, unmeasured, with ``/ping`` polled as in the measured
    run: a fresh PyPy server's first seconds include compiling the consume and ``/ping`` paths, which
    a long-running server has done.
``mem``
    The server's RSS (``VmRSS``) before and after queueing ``--messages`` messages in one channel;
    reports (after - before) / messages, in bytes per queued message.

While ``pub`` and ``sub`` load runs, a thread polls ``GET /ping`` every 10 ms (``--ping-interval``;
a new connection each time, as a health checker would); the table shows its 99th percentile
latency, the server's CPU use (% of one CPU) and, in the notes, CPU taken meanwhile by unrelated
processes and by the hypervisor for other machines (steal), which makes the figures noisy. Only
in ``--json``: time spent on interrupts, much of it the load's own loopback traffic, nsqload's
own CPU use, and the server's time in the kernel and its page faults (on the VM measured here, a
page of memory new to the host costs 6x more than one it backs already, so a publishing server
that grows past that pool slows down). A ``/ping`` took an idle PyPy server 3-4 ms of CPU while
the path was new to its JIT, 0.6 ms after 9 s of them (1.8 ms after a minute without the ``decay=0`` of
:mod:`nsqtx.tuning`); CPython 1.2 ms. Under a consume load, polling every 10 ms lowered a warm
PyPy consume by 20-30% when ``/ping`` was new to the server, and by 5% and 18% in two rounds
after a 6 s warm-up polled as well; ``--ping-interval 0`` measures without it. ``--ping-warmup N``
first sends N /pings one after another to each pub and sub run's fresh server, before it fills
or warms up: with 1500, a PyPy server's /ping path is compiled before the load, as a long-running
server's is by its health checks. The server's own warnings and errors are printed after the
table. ``--json`` gives every figure (also /ping p50 and max, RSS, fill rates) for machines.

Examples::

    python -m benchmarks
    python -m benchmarks --python /tmp/pvenv/bin/python --scenarios pub --seconds 10
    python -m benchmarks --python /tmp/venv/bin/python --python /tmp/pvenv/bin/python --json
    python -m benchmarks --mem-queue-size=0 --scenarios pub
    python -m benchmarks --python /tmp/venv/bin/python --python /tmp/pvenv/bin/python --repeat 3
    python -m benchmarks --python /tmp/pvenv/bin/python --scenarios sub --sub-warmup 1 --repeat 5
    python -m benchmarks --python /tmp/pvenv/bin/python --nsqd ~/go/bin/nsqd --scenarios sub --repeat 9
    python -m benchmarks --python /tmp/pvenv/bin/python --nsqd ~/go/bin/nsqd --scenarios pub,sub \
        --transport plain,tls,snappy,deflate,tls+snappy,tls+deflate

The machine this runs on is usually shared, and single runs vary by tens of percent: ``--repeat N``
runs everything N times, alternating the order of runtimes and connection counts, and reports for
each figure the run with the median (its notes list every run's figure; ``--json`` has every run).
The notes of each connection count after the first in ``--connections`` also compare it with the
first count round by round (the ratio of their rates in each round, and in how many it was ahead):
two counts' medians can come out either way in a noisy hour, a count ahead in most rounds hardly.

``--nsqd PATH`` measures a Go nsqd binary the same way, in the same rounds as the ``--python``
runtimes (listed after them): it takes the same flags, answers the same HTTP calls, and logs its warnings
and errors where the bench looks for them. A Go nsqd needs no Go toolchain on the machine that runs
the bench, only the binary (nsqio/nsq's releases, or ``go build ./apps/nsqd`` in its source).

``--python`` picks the server's interpreter (repeat it to compare runtimes); the server imports
nsqtx from this source tree (``PYTHONPATH`` is set to the repository root) and inherits the
environment, so e.g. ``PYPY_GC_NURSERY=64MB python -m benchmarks ...`` measures that PyPy setting. ``--mem-queue-size``
is passed through to the server (default: large enough to keep the whole run in memory; 0 sends
every message through the disk queue in the temporary data directory). A publish the server
refuses (``E_MPUB_FAILED``, e.g. a disk that is full) is reported as the scenario's error instead
of a rate. The exit status is 1 when any scenario failed, 2 when the
bench could not start at all (no gcc, no nsqload.c).
"""
