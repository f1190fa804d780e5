"""Flags and config-file keys as Go's programs read them: each setting has a kind, a flag is its name
with dashes, a TOML key its name with underscores, and a value given on the command line beats the
file, which beats the default.

:class:`SettingsOptions` is the twistd options class of a server whose settings are listed as
``(name, kind, help)``: `twistd nsqtx` (:mod:`nsqtx.tap`) and `twistd nsqtx-lookupd`
(:mod:`nsqtx.lookupd.tap`). Any bad value stops start-up with one line on stderr and exit status 1,
because a page of usage text buries the one thing that is wrong.
"""
from __future__ import annotations

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
#: Go's bool: flags as strconv.ParseBool reads them, TOML booleans in the file
BOOL = "bool"
#: nsqd's --tls-required: a bool, or "tcp-https" (required except over HTTP), as 0, 1 or 2
TLS_REQUIRED = "tls required"

_GO_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
             "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}

_GO_INTEGER = re.compile(r"[+-]?[0-9]+")


def flag_name(name: str) -> str:
    return name.replace("_", "-")


def convert_flag(kind: str, text: str, label: str):
    """Turn a command-line string into the setting's value, as Go's flag package would."""
    if kind == BOOL:
        if text not in _GO_BOOLS:
            raise ValueError("invalid value %r for %s: not a boolean" % (text, label))
        return _GO_BOOLS[text]
    if kind == TLS_REQUIRED:
        if text.lower() == "tcp-https":
            return 1
        return 2 if convert_flag(BOOL, text, label) else 0
    if kind == DURATION:
        return _duration(text, label)
    if kind == INTEGER:
        if not _GO_INTEGER.fullmatch(text):
            raise ValueError("invalid value %r for %s: not an integer" % (text, label))
        return int(text)
    return _string(kind, text, label)


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
    if kind in (BOOL, TLS_REQUIRED) and isinstance(value, bool):
        return (2 if value else 0) if kind == TLS_REQUIRED else value
    if kind in (BOOL, TLS_REQUIRED) and isinstance(value, str):
        return convert_flag(kind, value, label)
    if kind in (ADDRESS_LIST, STRING_LIST):
        if not isinstance(value, list):
            raise ValueError("invalid value %r for %s: not a list" % (value, label))
        return [convert_file_value(ADDRESS if kind == ADDRESS_LIST else STRING, item, label) for item in value]
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


def read_config_file(path: str, kinds: dict, aliases: dict, program: str) -> dict:
    """The setting values in a TOML config file; ValueError naming the problem. A key with no setting
    is ignored, as Go's programs do, with a warning on stderr, since a typo would otherwise pass
    unnoticed."""
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
        name = aliases.get(key, key)
        if name not in kinds:
            sys.stderr.write("%s: config file %s: ignoring unknown key %r\n" % (program, path, key))
            continue
        if name in values:
            raise ValueError("config file %s: give either %s, not both"
                             % (path, " or ".join(sorted(k for k in list(aliases) + [name]
                                                         if aliases.get(k, k) == name))))
        values[name] = convert_file_value(kinds[name], value, "%s in %s" % (key, path))
    return values


def _default_help(name: str, kind: str, text: str, defaults) -> str:
    # Defaults that depend on the host or on start-up are already described in the help text.
    if "(default" in text:
        return text
    value = getattr(defaults, name)
    if value == "":
        return text
    if kind == DURATION:
        value = format_duration(value)
    elif kind == BOOL:
        value = "true" if value else "false"
    return "%s (default: %s)" % (text, value)


def parameters(settings, defaults) -> list:
    """usage.Options parameters: --config, then one per setting but address lists (whose flags are
    methods of their own, see SettingsOptions.add_to_list), documenting the defaults.

    Flags default to None so that postOptions can tell "given" from "not given" and let the config
    file fill the rest; the real defaults are spelled out in the help text instead."""
    return [["config", None, None, "path to a TOML config file (keys: flag names with underscores)"]] + [
        [flag_name(name), None, None, _default_help(name, kind, text, defaults)]
        for name, kind, text in settings if kind not in (ADDRESS_LIST, STRING_LIST)
    ]


class SettingsOptions(usage.Options):
    """A server's twistd options. Subclasses give `program`, `version_line` (what --version prints),
    `settings` ((name, kind, help), in the order --help lists them), `options_class` (whose keyword
    arguments are the names, and which has validate()) and `aliases` (config-file key -> name); their
    flags follow (see :func:`parameters`). After parsing, `self.options` is an `options_class`."""

    program = ""
    version_line = ""
    settings = ()
    options_class = None
    aliases = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.options_class is not None:
            cls.optParameters = parameters(cls.settings, cls.options_class())

    def __init__(self):
        usage.Options.__init__(self)
        #: address lists given on the command line, by setting name
        self.lists = {}

    def add_to_list(self, name: str, flag: str, value: str, kind: str = ADDRESS) -> None:
        """A repeatable flag's value: the flags given replace the config file's list."""
        self.lists.setdefault(name, []).append(convert_flag(kind, value, flag))

    def opt_version(self):
        """Print the version and exit."""
        print(self.version_line)
        raise SystemExit(0)

    def parseOptions(self, options=None):
        """Exit with one line on stderr for any bad flag, file or value: twistd answers a UsageError
        with the whole usage page; a SystemExit carrying the message prints just that line."""
        try:
            usage.Options.parseOptions(self, options)
        except (usage.UsageError, ValueError) as e:
            raise SystemExit("%s: %s" % (self.program, e)) from None

    def postOptions(self):
        kinds = {name: kind for name, kind, _ in self.settings}
        values = read_config_file(self["config"], kinds, self.aliases, self.program) if self["config"] else {}
        for name, kind in kinds.items():
            if kind in (ADDRESS_LIST, STRING_LIST):
                if name in self.lists:
                    values[name] = self.lists[name]
                continue
            text = self[flag_name(name)]
            if text is not None:
                values[name] = convert_flag(kind, text, "--" + flag_name(name))
        options = self.options_class(**values)
        options.validate()
        self.options = options
