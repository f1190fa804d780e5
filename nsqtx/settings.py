"""Flags and config-file keys as Go's programs read them: each setting has a kind, a flag is its name
with dashes, a TOML key its name with underscores, and a value given on the command line beats the
file, which beats the default.

:class:`SettingsOptions` is the twistd options class of a server whose settings are listed as
``(name, kind, help)``: `twistd nsqtx` (:mod:`nsqtx.tap`) and `twistd nsqtx-lookupd`
(:mod:`nsqtx.lookupd.tap`). Any bad value stops start-up with one line on stderr and exit status 1,
because a page of usage text buries the one thing that is wrong.

Flags are read with the syntax of Go's flag package (:meth:`SettingsOptions.go_flags`), so that the
command lines and service units written for Go's programs work unchanged. A setting of a feature the
server lacks (:class:`Missing`) is accepted where its value asks for nothing, and refused otherwise:
starting without the TLS or AUTH a deployment asked for would be worse than not starting.
"""
from __future__ import annotations

import json
import re
import sys

from twisted.python import usage

from nsqtx.durations import format_duration, parse_duration
from nsqtx.options import LOG_LEVELS, parse_address

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ADDRESS = "address"
DURATION = "duration"
INTEGER = "integer"
LOG_LEVEL = "log level"
STRING = "string"
#: a list of addresses: its flag is given once per address, its config key holds a list
ADDRESS_LIST = "address list"
#: a list of strings (URLs, say), given as ADDRESS_LIST is
STRING_LIST = "string list"
#: Go's bool: a flag given alone is true, or takes its value after "=" (``-snappy=false``)
BOOLEAN = "boolean"
#: nsqd's --tls-required, a BOOLEAN that may also be "tcp-https" (required except over HTTP): 0, 1 or 2
TLS_REQUIRED = "tls required"
#: the kinds whose flags are given once per item, by methods of their own (SettingsOptions.add_to_list)
LISTS = (ADDRESS_LIST, STRING_LIST)

_GO_INTEGER = re.compile(r"[+-]?[0-9]+")
#: what Go's strconv.ParseBool takes
_GO_TRUE = frozenset(["1", "t", "T", "TRUE", "true", "True"])
_GO_FALSE = frozenset(["0", "f", "F", "FALSE", "false", "False"])

#: what a :class:`Missing` setting may be given: nothing but an empty value ...
EMPTY = "empty"
#: ... nothing but false ...
FALSE = "false"
#: ... or anything, since it does nothing unless another setting (refused) asks for its feature
ANY = "any"


class Missing:
    """What a setting of a feature the server lacks may be given. `feature` names it in messages
    ("TLS"); `off` is EMPTY or FALSE for a setting that turns the feature on (`tls_cert`,
    `snappy`), ANY for one that only tunes it (`statsd_interval`); `flag` is its flag where that is
    not the name with dashes (Go's `auth_http_addresses` is `--auth-http-address`)."""

    def __init__(self, feature: str, off: str, flag: str | None = None):
        self.feature = feature
        self.off = off
        self.flag = flag

    def asks(self, value) -> bool:
        """Whether `value` (a flag's text or a TOML value) asks for the feature."""
        if self.off == EMPTY:
            return value not in ("", [])
        if self.off == FALSE:
            return value is not False and value not in _GO_FALSE
        return False

    def help(self) -> str:
        if self.off == ANY:
            return "accepted, no effect: nsqtx has no %s yet" % self.feature
        return "nsqtx has no %s yet: only %s is accepted" % (
            self.feature, "an empty value" if self.off == EMPTY else "false")

    def check(self, value, given: str, validate) -> None:
        """Refuse `value` in one line if it asks for the feature (`given` shows it as the user wrote
        it: "--tls-cert=x", "tls_cert = \"x\""); otherwise, if the setting only tunes the feature,
        call `validate`, which raises ValueError for a value Go would not take either."""
        if self.asks(value):
            raise ValueError("%s asks for %s, which nsqtx does not have yet: leave it out or %s" % (
                given, self.feature, "empty" if self.off == EMPTY else "set it to false"))
        if self.off == ANY:
            validate()


def flag_name(name: str) -> str:
    return name.replace("_", "-")


def convert_flag(kind: str, text: str, label: str):
    """Turn a command-line string into the setting's value, as Go's flag package would."""
    if kind == DURATION:
        return _duration(text, label)
    if kind == INTEGER:
        if not _GO_INTEGER.fullmatch(text):
            raise ValueError("invalid value %r for %s: not an integer" % (text, label))
        return int(text)
    if kind == BOOLEAN:
        return parse_go_bool(text, label)
    if kind == TLS_REQUIRED:
        if text.lower() == "tcp-https":
            return 1
        return 2 if parse_go_bool(text, label) else 0
    return _string(kind, text, label)


def parse_go_bool(text: str, label: str) -> bool:
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    raise ValueError("invalid value %r for %s: not a boolean (true or false)" % (text, label))


def convert_file_value(kind: str, value, label: str):
    """Turn a TOML value into the setting's value, as go-options' coercion would: an integer given for
    a duration is milliseconds (``msg_timeout = 60000``), and a decimal string is taken for an
    integer."""
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
    if kind in LISTS:
        if not isinstance(value, list):
            raise ValueError("invalid value %r for %s: not a list" % (value, label))
        return [convert_file_value(ADDRESS if kind == ADDRESS_LIST else STRING, item, label) for item in value]
    if kind in (BOOLEAN, TLS_REQUIRED):
        if isinstance(value, bool):
            return (2 if value else 0) if kind == TLS_REQUIRED else value
        if isinstance(value, str):
            return convert_flag(kind, value, label)
        raise ValueError("invalid value %r for %s: not a boolean (true or false)" % (value, label))
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


def read_config_file(path: str, kinds: dict, aliases: dict, program: str, missing=None,
                     overridden=frozenset()) -> dict:
    """The setting values in a TOML config file; ValueError naming the problem. A key with no setting
    is ignored, as Go's programs do, with a warning on stderr, since a typo would otherwise pass
    unnoticed. `missing` maps the names of settings of missing features to their (kind,
    :class:`Missing`): the first in the file that asks for its feature is refused, the others are
    checked and left out. Settings in `overridden` are given on the command line: as in Go, their
    keys are not even read."""
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
    missing = missing or {}
    values = {}
    for key, value in table.items():
        name = aliases.get(key, key)
        label = "%s in %s" % (key, path)
        if name in missing:
            kind, m = missing[name]
            if name not in overridden:
                m.check(value, "config file %s: %s = %s" % (path, key, _toml(value)),
                        lambda: convert_file_value(kind, value, label))
            continue
        if name not in kinds:
            sys.stderr.write("%s: config file %s: ignoring unknown key %r\n" % (program, path, key))
            continue
        if name in values:
            raise ValueError("config file %s: give either %s, not both"
                             % (path, " or ".join(sorted(k for k in list(aliases) + [name]
                                                         if aliases.get(k, k) == name))))
        if name not in overridden:
            values[name] = convert_file_value(kinds[name], value, label)
    return values


def _toml(value) -> str:
    """A value as the TOML file spells it (true, "text", [1.0, 0.99]), for messages."""
    try:
        return json.dumps(value)
    except TypeError:
        return str(value)


def _default_help(name: str, kind: str, text: str, defaults) -> str:
    # Defaults that depend on the host or on start-up are already described in the help text.
    if "(default" in text:
        return text
    value = getattr(defaults, name)
    if value == "":
        return text
    if kind == DURATION:
        value = format_duration(value)
    elif kind == BOOLEAN:
        value = "true" if value else "false"
    return "%s (default: %s)" % (text, value)


def missing_flag(name: str, missing: Missing) -> str:
    return missing.flag or flag_name(name)


def parameters(settings, defaults, missing=()) -> list:
    """usage.Options parameters: --config, then one per setting but address lists (whose flags are
    methods of their own, see SettingsOptions.add_to_list), documenting the defaults, then one per
    setting of a missing feature ((name, kind, help, :class:`Missing`)), saying what it accepts.

    Flags default to None so that postOptions can tell "given" from "not given" and let the config
    file fill the rest; the real defaults are spelled out in the help text instead."""
    return [["config", None, None, "path to a TOML config file (keys: flag names with underscores)"]] + [
        [flag_name(name), None, None, _default_help(name, kind, text, defaults)]
        for name, kind, text in settings if kind not in LISTS
    ] + [
        [missing_flag(name, m), None, None, "%s (%s)" % (text, m.help())] for name, _, text, m in missing
    ]


class SettingsOptions(usage.Options):
    """A server's twistd options. Subclasses give `program`, `version_line` (what --version prints),
    `settings` ((name, kind, help), in the order --help lists them), `options_class` (whose keyword
    arguments are the names, and which has validate()), `aliases` (config-file key -> name) and
    `missing` ((name, kind, help, :class:`Missing`) for the settings of features it lacks); their
    flags follow (see :func:`parameters`). After parsing, `self.options` is an `options_class`."""

    program = ""
    version_line = ""
    settings = ()
    options_class = None
    aliases = {}
    missing = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.options_class is not None:
            cls.optParameters = parameters(cls.settings, cls.options_class(), cls.missing)

    def __init__(self):
        usage.Options.__init__(self)
        #: lists given on the command line, by setting name
        self.lists = {}

    def add_to_list(self, name: str, flag: str, value: str, kind: str = ADDRESS) -> None:
        """A repeatable flag's value: the flags given replace the config file's list."""
        self.lists.setdefault(name, []).append(convert_flag(kind, value, flag))

    def opt_version(self):
        """Print the version and exit."""
        print(self.version_line)
        raise SystemExit(0)

    def opt_verbose(self):
        """[deprecated] no effect, as in Go's nsqd and nsqlookupd: use --log-level"""

    def parseOptions(self, options=None):
        """Exit with one line on stderr for any bad flag, file or value: twistd answers a UsageError
        with the whole usage page; a SystemExit carrying the message prints just that line."""
        try:
            usage.Options.parseOptions(self, self.go_flags(sys.argv[1:] if options is None else options))
        except (usage.UsageError, ValueError) as e:
            raise SystemExit("%s: %s" % (self.program, e)) from None

    def go_flags(self, argv) -> list:
        """`argv` read as Go's flag package reads it, rewritten as ``--name=value`` (``--name`` for
        this class's own switches) for usage.Options, which would take ``-tcp-address`` for the
        short options -t, -c, ...

        Go's rules: one dash or two; the value after "=" or, for all but booleans, in the next
        argument, whatever it holds; a boolean alone is true; "--" ends the flags. Go also stops at
        the first argument that is not a flag and ignores the rest, which would silently drop every
        flag after a stray word (``-snappy false -tcp-address=...``): that is refused here, as are
        names this class does not have (no abbreviations, unlike getopt)."""
        valued = {opt[:-1] for opt in self.longOpt if opt.endswith("=")}
        switches = {opt for opt in self.longOpt if not opt.endswith("=")}
        booleans = {flag_name(name) for name, kind, _ in self.settings if kind in (BOOLEAN, TLS_REQUIRED)}
        booleans.update(missing_flag(name, m) for name, kind, _, m in self.missing if kind == BOOLEAN)
        args = list(argv)
        out = []
        bare_boolean = None
        while args:
            arg = args.pop(0)
            if arg == "--":
                if args:
                    raise usage.UsageError("unexpected argument %r after --" % (args[0],))
                break
            if len(arg) < 2 or arg[0] != "-":
                hint = "" if bare_boolean is None else (
                    " (a boolean flag takes its value after =, as in %s=false)" % bare_boolean)
                raise usage.UsageError("unexpected argument %r%s" % (arg, hint))
            name, has_value, value = arg[2 if arg[1] == "-" else 1:].partition("=")
            if not name or name[0] == "-":
                raise usage.UsageError("bad flag syntax: %s" % arg)
            if name == "h" and "h" not in switches:
                name = "help"
            bare_boolean = None
            if name in booleans:
                if not has_value:
                    bare_boolean, value = arg, "true"
                out.append("--%s=%s" % (name, value))
            elif name in valued:
                if not has_value:
                    if not args:
                        raise usage.UsageError("flag needs an argument: %s" % arg)
                    value = args.pop(0)
                out.append("--%s=%s" % (name, value))
            elif name in switches:
                if not has_value or parse_go_bool(value, arg.partition("=")[0]):
                    out.append("--" + name)
            else:
                raise usage.UsageError("flag provided but not defined: %s" % arg.partition("=")[0])
        return out

    def postOptions(self):
        kinds = {name: kind for name, kind, _ in self.settings}
        missing = {name: (kind, m) for name, kind, _, m in self.missing}
        flags = {name: self[flag_name(name)] for name, kind in kinds.items() if kind not in LISTS}
        flags.update((name, self[missing_flag(name, m)]) for name, (_, m) in missing.items())
        given = {name for name, text in flags.items() if text is not None} | set(self.lists)
        values = {}
        if self["config"]:
            values = read_config_file(self["config"], kinds, self.aliases, self.program, missing, given)
        for name, text in flags.items():
            if text is None:
                continue
            if name in missing:
                kind, m = missing[name]
                label = "--" + missing_flag(name, m)
                m.check(text, "%s=%s" % (label, text), lambda: convert_flag(kind, text, label))
            else:
                values[name] = convert_flag(kinds[name], text, "--" + flag_name(name))
        values.update(self.lists)
        options = self.options_class(**values)
        options.validate()
        self.options = options
