"""What the bench prints: each runtime's name and the source it measured, a line for each run as it
ends, and the results, as the median of repeated runs and as a table."""
from __future__ import annotations

import subprocess
import sys

from benchmarks.errors import BenchError
from benchmarks.settings import REPO_ROOT


def source_version() -> str:
    """The commit of the server's source tree, "+" if it has changes, or "" outside a git checkout."""
    try:
        head = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, universal_newlines=True, timeout=10)
        dirty = subprocess.run(["git", "-C", REPO_ROOT, "status", "--porcelain", "--untracked-files=no"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True,
                               timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if head.returncode != 0:
        return ""
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "")


def describe_runtime(python: str) -> str:
    code = ("import platform, sys; v = getattr(sys, 'pypy_version_info', None); "
            "print(platform.python_implementation() + ' ' + platform.python_version()"
            " + (' (PyPy %d.%d.%d)' % tuple(v[:3]) if v else ''))")
    try:
        result = subprocess.run([python, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BenchError("cannot run --python %s: %s" % (python, e))
    if result.returncode != 0:
        raise BenchError("cannot run --python %s: %s" % (python, (result.stderr.strip().splitlines() or ["?"])[-1]))
    return result.stdout.strip()


def describe_nsqd(path: str) -> str:
    """ "Go nsqd 1.3.0" from what `path --version` prints ("nsqd v1.3.0 (built w/go1.19.8)")."""
    try:
        result = subprocess.run([path, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                universal_newlines=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BenchError("cannot run --nsqd %s: %s" % (path, e))
    words = result.stdout.split()
    if result.returncode != 0 or len(words) < 2 or words[0] != "nsqd":
        raise BenchError("--nsqd %s: not an nsqd (--version printed %r)" % (path, result.stdout.strip()[:200]))
    return "Go nsqd " + words[1].lstrip("v")


def _count(n: int) -> str:
    for size, suffix in ((10 ** 6, "M"), (10 ** 3, "k")):
        if n >= size and n % size == 0:
            return "%d%s" % (n // size, suffix)
    return str(n)


def median_rows(runs, args) -> list:
    """One row per (runtime, transport, scenario, connection count), in the order of the options as
    they run: the run with the median figure (the lower one of the middle two for an even count), so
    its /ping and CPU figures belong to it too, noting every run's figure."""
    groups = {}
    for row in runs:
        groups.setdefault((row["server"], row["mode"], row["transport"], row["connections"]), []).append(row)

    def figure(row):
        return row["bytes_per_msg"] if row["mode"] == "mem" else row["rate"]

    def position(key):
        server, mode, transport, conns = key
        # a mem row has one connection whatever --connections lists, and no transport: it runs with the
        # first one's rows
        order = args.connections.index(conns) if conns in args.connections else len(args.connections)
        return (args.servers.index(server), args.transports.index(transport) if transport in args.transports else 0,
                args.scenarios.index(mode), order)

    out = []
    for key in sorted(groups, key=position):
        group = groups[key]
        ok = sorted((r for r in group if not r["error"]), key=figure)
        failed = [r for r in group if r["error"]]
        if not ok:
            out.append(failed[0])
            continue
        row = dict(ok[(len(ok) - 1) // 2])
        unit = "B/msg" if row["mode"] == "mem" else "msgs/s"
        row["notes"] = ["median of %d runs (%s %s)" % (len(ok), ", ".join("%.0f" % figure(r) for r in ok), unit)
                        ] + row["notes"]
        if failed:
            row["notes"].append("%d of %d runs failed: %s" % (len(failed), len(group), failed[0]["error"]))
        base = args.connections[0]
        if row["mode"] != "mem" and key[3] != base:
            against = _against(ok, groups.get(key[:3] + (base,), []), base)
            if against:
                row["notes"].append(against)
        out.append(row)
    return out


def _against(runs, base_runs, base: int) -> str:
    """How `runs` compare with the runs of `base` connections in the same round, if any ran ("" if
    none): on a shared machine one count's median can come out ahead of another's by chance, a
    count ahead of the other in most rounds hardly."""
    base_rates = {r["round"]: r["rate"] for r in base_runs if not r["error"] and r["rate"]}
    ratios = [r["rate"] / base_rates[r["round"]]
              for r in sorted((r for r in runs if r["round"] is not None and r["round"] in base_rates),
                              key=lambda r: r["round"])]
    if not ratios:
        return ""
    return "against %d connection%s in the same round: %s (ahead in %d of %d)" % (
        base, "" if base == 1 else "s", ", ".join("%.2fx" % x for x in ratios), sum(x > 1 for x in ratios),
        len(ratios))


def format_table(rows) -> str:
    """One line per row: names to the left, figures to the right. The transport column is there once a
    row went over another transport than plain (a table of plain rows looks as it did before there
    were transports); a mem row, filled over plain TCP whatever the transport, shows none."""
    with_transport = any(r["transport"] not in (None, "plain") for r in rows)
    header = ("runtime", "mode") + (("transport",) if with_transport else ()) + (
        "mem-queue", "conns", "msgs/s", "B/queued msg", "/ping p99 ms", "server CPU%", "notes")
    names = 3 if with_transport else 2
    lines = [header]
    for r in rows:
        ping = r["ping"] or {}
        notes = list(r["notes"])
        if r["error"]:
            notes.insert(0, "FAILED: " + r["error"])
        lines.append((r["runtime"], r["mode"]) + ((r["transport"] or "-",) if with_transport else ()) + (
            _count(r["mem_queue_size"]), str(r["connections"]),
            "-" if r["rate"] is None or r["mode"] == "mem" or r["error"] else "%.0f" % r["rate"],
            "-" if r["bytes_per_msg"] is None else "%.0f" % r["bytes_per_msg"],
            "%.2f" % ping["p99_ms"] if "p99_ms" in ping and not r["error"] else "-",
            "-" if r["server_cpu_pct"] is None else "%.0f" % r["server_cpu_pct"],
            "; ".join(notes)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for line in lines:
        cells = [cell.ljust(w) if i < names else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells + [line[-1]]).rstrip())
    return "\n".join(out)


def _progress(row: dict) -> str:
    if row["error"]:
        return "FAILED: " + row["error"]
    if row["mode"] == "mem":
        return "%.0f bytes per queued message" % row["bytes_per_msg"]
    return "%.0f msgs/s" % row["rate"]


def label(row: dict) -> str:
    """How the bench names a run as it goes: runtime, scenario, transport unless plain (or none, for
    mem), connections."""
    transport = " " + row["transport"] if row["transport"] not in (None, "plain") else ""
    return "%s %s%s x%d" % (row["runtime"], row["mode"], transport, row["connections"])


def report(row: dict) -> None:
    print("benchmarks: %s: %s" % (label(row), _progress(row)), file=sys.stderr, flush=True)
