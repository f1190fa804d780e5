"""`twistd nsqtx`: nsqd's flags and TOML config file, resolved into Options and an NSQD service.

Precedence is Go nsqd's: a flag given on the command line beats the config file, which beats the
default. Any bad value stops start-up with one line on stderr and exit status 1 (see
:meth:`NSQDOptions.parseOptions`), because a page of usage text buries the one thing that is wrong.
"""
from __future__ import annotations

import re
import signal
import sys

from twisted.application.service import MultiService, Service
from twisted.internet.error import CannotListenError
from twisted.python import usage

from nsqtx.durations import format_duration, parse_duration
from nsqtx.log import set_log_level
from nsqtx.metadata import MetadataError
from nsqtx.node import NSQD
from nsqtx.options import LOG_LEVELS, Options as NodeOptions, check_data_path, parse_address
from nsqtx.tuning import tune
from nsqtx.version import NSQD_VERSION, __version__

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ADDRESS = "address"
DURATION = "duration"
INTEGER = "integer"
LOG_LEVEL = "log level"
STRING = "string"

#: (Options attribute, kind, help), in the order Go nsqd lists its flags. The flag is the attribute
#: with dashes, the config file key is the attribute itself (Go's file also calls node_id "id").
SETTINGS = [
    ("log_level", LOG_LEVEL, "log verbosity: debug, info, warn, error or fatal"),
    ("node_id", INTEGER, "unique part for message IDs, in [0,1024) (default: hash of the host name)"),
    ("http_address", ADDRESS, "<addr>:<port> to listen on for HTTP clients"),
    ("tcp_address", ADDRESS, "<addr>:<port> to listen on for TCP clients"),
    ("broadcast_address", STRING, "address registered with lookupd (default: the host name)"),
    ("broadcast_tcp_port", INTEGER, "TCP port registered with lookupd (default: the listening port)"),
    ("broadcast_http_port", INTEGER, "HTTP port registered with lookupd (default: the listening port)"),
    ("data_path", STRING, "path to store disk-backed messages (default: the current directory)"),
    ("mem_queue_size", INTEGER, "number of messages to keep in memory (per topic/channel)"),
    ("max_bytes_per_file", INTEGER, "number of bytes per diskqueue file before rolling"),
    ("sync_every", INTEGER, "number of messages per diskqueue fsync"),
    ("sync_timeout", DURATION, "duration of time per diskqueue fsync"),
    ("msg_timeout", DURATION, "default duration to wait before auto-requeueing a message"),
    ("max_msg_timeout", DURATION, "maximum duration before a message will time out"),
    ("max_msg_size", INTEGER, "maximum size of a single message in bytes"),
    ("max_req_timeout", DURATION, "maximum requeueing timeout for a message"),
    ("max_body_size", INTEGER, "maximum size of a single command body"),
    ("max_heartbeat_interval", DURATION,
     "maximum client configurable duration of time between client heartbeats"),
    ("max_rdy_count", INTEGER, "maximum RDY count for a client"),
    ("max_output_buffer_size", INTEGER,
     "maximum client configurable size (in bytes) for a client output buffer"),
    ("max_output_buffer_timeout", DURATION,
     "maximum client configurable duration of time between flushing to a client"),
    ("min_output_buffer_timeout", DURATION,
     "minimum client configurable duration of time between flushing to a client"),
    ("output_buffer_timeout", DURATION, "default duration of time between flushing data to clients"),
    ("max_channel_consumers", INTEGER,
     "maximum channel consumer connection count per nsqd instance (0: unlimited)"),
    ("max_deflate_level", INTEGER, "max deflate compression level a client can negotiate"),
]

KINDS = {name: kind for name, kind, _ in SETTINGS}

#: Go nsqd's config file names the node id "id"; "node_id" matches the flag and is accepted too.
FILE_ALIASES = {"id": "node_id"}

_GO_INTEGER = re.compile(r"[+-]?[0-9]+")


def flag_name(name: str) -> str:
    return name.replace("_", "-")


def version_string() -> str:
    return "nsqtx v%s (nsqd %s compatible)" % (__version__, NSQD_VERSION)


def _parameters() -> list:
    """usage.Options parameters: --config, then one per setting, documenting Go nsqd's defaults.

    Flags default to None so that postOptions can tell "given" from "not given" and let the config
    file fill the rest; the real defaults are spelled out in the help text instead.
    """
    defaults = NodeOptions()
    return [["config", None, None, "path to a TOML config file (keys: flag names with underscores)"]] + [
        [flag_name(name), None, None, _default_help(name, kind, text, defaults)]
        for name, kind, text in SETTINGS
    ]


def _default_help(name: str, kind: str, text: str, defaults: NodeOptions) -> str:
    # Defaults that depend on the host or on start-up are already described in the help text.
    if "(default" in text:
        return text
    value = getattr(defaults, name)
    shown = format_duration(value) if kind == DURATION else value
    return "%s (default: %s)" % (text, shown)


def convert_flag(name: str, text: str):
    """Turn a command-line string into the option's value, as Go's flag package would."""
    label = "--" + flag_name(name)
    kind = KINDS[name]
    if kind == DURATION:
        return _duration(text, label)
    if kind == INTEGER:
        if not _GO_INTEGER.fullmatch(text):
            raise ValueError("invalid value %r for %s: not an integer" % (text, label))
        return int(text)
    return _string(kind, text, label)


def convert_file_value(name: str, value, label: str):
    """Turn a TOML value into the option's value, as Go nsqd's go-options coercion would.

    go-options treats an integer given for a duration as milliseconds (``msg_timeout = 60000``),
    and accepts a decimal string for an integer option.
    """
    kind = KINDS[name]
    if kind == DURATION:
        if isinstance(value, int) and not isinstance(value, bool):
            return value / 1000.0
        if isinstance(value, str):
            return _duration(value, label)
        raise ValueError("invalid value %r for %s: want a duration string such as \"60s\" "
                         "or an integer of milliseconds" % (value, label))
    if kind == INTEGER:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _GO_INTEGER.fullmatch(value):
            return int(value)
        raise ValueError("invalid value %r for %s: not an integer" % (value, label))
    if not isinstance(value, str):
        raise ValueError("invalid value %r for %s: not a string" % (value, label))
    return _string(kind, value, label)


def _duration(text: str, label: str) -> float:
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError("invalid value %r for %s: not a duration (use Go syntax such as "
                         "60s, 250ms or 1m30s)" % (text, label)) from None


def _string(kind: str, text: str, label: str) -> str:
    if kind == ADDRESS:
        parse_address(text, label)
    elif kind == LOG_LEVEL:
        text = text.lower()
        if text not in LOG_LEVELS:
            raise ValueError("invalid value %r for %s: not one of %s"
                             % (text, label, ", ".join(LOG_LEVELS)))
    return text


def read_config_file(path: str) -> dict:
    """Return option values from nsqd's TOML config file; raise ValueError naming the problem."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except OSError as e:
        raise ValueError("cannot read config file %s: %s" % (path, e.strerror or e)) from None
    except UnicodeDecodeError as e:
        raise ValueError("config file %s is not UTF-8: %s" % (path, e)) from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError("config file %s is not valid TOML: %s" % (path, e)) from None
    values = {}
    for key, value in table.items():
        name = FILE_ALIASES.get(key, key)
        if name not in KINDS:
            # Go nsqd ignores keys it has no option for; so do we, but say so, since a typo
            # would otherwise pass unnoticed.
            sys.stderr.write("nsqtx: config file %s: ignoring unknown key %r\n" % (path, key))
            continue
        if name in values:
            raise ValueError("config file %s: give either id or node_id, not both" % (path,))
        values[name] = convert_file_value(name, value, "%s in %s" % (key, path))
    return values


class NSQDOptions(usage.Options):
    longdesc = ("Runs nsqd (protocol V2, wire-compatible with NSQ 1.3). Durations use Go syntax "
                "(60s, 250ms, 1m30s). Flags override values from --config.")

    optParameters = _parameters()

    options: NodeOptions

    def opt_version(self):
        """Print the nsqtx version and the nsqd version it is compatible with, and exit."""
        print(version_string())
        raise SystemExit(0)

    def parseOptions(self, options=None):
        """Exit with one line on stderr for any bad flag, file or value.

        twistd answers a UsageError by printing the whole usage page before the error; a
        SystemExit carrying the message makes Python print just that line and exit with 1.
        """
        try:
            usage.Options.parseOptions(self, options)
        except (usage.UsageError, ValueError) as e:
            raise SystemExit("nsqtx: %s" % (e,)) from None

    def postOptions(self):
        values = read_config_file(self["config"]) if self["config"] else {}
        for name in KINDS:
            text = self[flag_name(name)]
            if text is not None:
                values[name] = convert_flag(name, text)
        options = NodeOptions(**values)
        options.validate()
        check_data_path(options.data_path)
        self.options = options


#: The name twistd's ServiceMaker looks up.
Options = NSQDOptions


class ExitZeroOnSignals(Service):
    """SIGTERM/SIGINT stop the reactor (so NSQD.stopService runs) and the process exits with 0, as
    Go nsqd does. twistd's own handlers re-raise the signal after the clean stop, which makes a
    service manager report a killed process; these replace them once the reactor is running."""

    name = "exit-zero-on-signals"

    def __init__(self, reactor):
        self.reactor = reactor

    def startService(self):
        Service.startService(self)
        # After startup, since the reactor installs its own handlers while starting.
        self.reactor.callWhenRunning(self._install)

    def _install(self):
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)

    def _stop(self, signum, frame):
        self.reactor.callFromThread(self.reactor.stop)


class Command(MultiService):
    """The service tree `twistd nsqtx` runs. A start-up failure (a port in use, an unreadable
    nsqd.dat, a missing data path) ends the process with one line on stderr and status 1, like a
    bad flag, instead of twistd's traceback. Once started, it tunes the interpreter for a server
    (:mod:`nsqtx.tuning`)."""

    def startService(self):
        try:
            MultiService.startService(self)
        except (CannotListenError, MetadataError, OSError, ValueError) as e:
            raise SystemExit("nsqtx: %s" % (e,)) from None
        tune()


def server_service(options: NodeOptions, reactor) -> Command:
    """The service tree of a server process, so that `twistd nsqtx` and a deployment's .tac file
    (``tac/nsqd.tac``) start, tune and stop the same way."""
    top = Command()
    NSQD(options).setServiceParent(top)
    ExitZeroOnSignals(reactor).setServiceParent(top)
    return top


def makeService(config: NSQDOptions) -> MultiService:
    from twisted.internet import reactor

    set_log_level(config.options.log_level)
    return server_service(config.options, reactor)
