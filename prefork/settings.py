"""
Where each option of C{twistd prefork} comes from: the command line, the
environment (C{PREFORK_<OPTION>}, C{WEB_CONCURRENCY}), a TOML file
(C{--config}), or its default; and the effective configuration written
back as TOML.

The sources are merged into one list of command-line arguments, which
L{twisted.python.usage.Options} then parses as it parses any command line:
a value from a file or the environment goes through the same checks as one
typed by hand, and an error names where the value came from (L{blame}).
Precedence: command line, then environment, then file, then default.
"""

from __future__ import annotations

import getopt
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from twisted.python import usage

from prefork.options import OPTIONS, Kind, Option, ofKind

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: A value as the sources give it: a parameter's text, a flag, or the
#: values of a repeatable option.
Value = str | bool | list[str]

ENV_PREFIX = "PREFORK_"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class SettingError(Exception):
    """
    A source holds something no option can take; the message is one line
    naming the source, the key and what is wrong.
    """


@dataclass(frozen=True)
class Origin:
    """
    Where a value came from.

    @ivar kind: C{"command line"}, C{"env"}, C{"file"} or C{"default"}.
    @ivar where: The environment variable, or the file's path.
    @ivar key: The key as the file spelled it.
    """

    kind: str
    where: str = ""
    key: str = ""

    def comment(self) -> str:
        """
        The comment L{render} puts after a value.
        """
        return f"# {self.kind} {self.where}".rstrip()

    def name(self, option: str) -> str:
        """
        How an error message names the option in this source.
        """
        if self.kind == "env":
            return self.where
        if self.kind == "file":
            return f"{self.where}: {self.key or option}"
        return f"--{option}"


COMMAND_LINE = Origin("command line")
DEFAULT = Origin("default")


@dataclass(frozen=True)
class Setting:
    option: str
    value: Value
    origin: Origin


@dataclass
class OptionTable:
    """
    What the sources need to know of the options, read from their
    declarations (L{prefork.options.OPTIONS}).

    @ivar parameters: Each parameter, with its default as text.
    @ivar environment: Each environment variable besides C{PREFORK_<OPTION>}
        that gives an option (C{WEB_CONCURRENCY}), with the option.
    """

    parameters: dict[str, str | None] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    repeatable: list[str] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    commandLineOnly: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, declarations: Iterable[Option] = OPTIONS) -> OptionTable:
        declarations = list(declarations)
        return cls(
            parameters={o.name: o.text for o in ofKind(Kind.PARAMETER, declarations)},
            flags=[o.name for o in ofKind(Kind.FLAG, declarations)],
            repeatable=[o.name for o in ofKind(Kind.REPEATABLE, declarations)],
            aliases={alias: o.name for o in declarations for alias in o.aliases},
            commandLineOnly=tuple(o.name for o in declarations if o.commandLineOnly),
            environment={variable: o.name for o in declarations for variable in o.environment},
        )

    def names(self) -> list[str]:
        """
        Every option, in the order L{render} writes them.
        """
        return [*self.parameters, *self.repeatable, *self.flags]

    def canonical(self, key: str) -> str | None:
        """
        The option C{key} names, dashes or underscores, alias or not.
        """
        name = key.replace("_", "-")
        name = self.aliases.get(name, name)
        return name if name in self.names() else None


def fromCommandLine(options: usage.Options, table: OptionTable, argv: list[str]) -> list[Setting]:
    """
    The options given in C{argv}, read as L{usage.Options.parseOptions}
    reads them.

    @raise usage.UsageError: C{argv} is not a valid command line.
    """
    try:
        pairs, rest = getopt.getopt(argv, options.shortOpt, options.longOpt)
    except getopt.error as e:
        raise usage.UsageError(str(e)) from e
    if rest:
        raise usage.UsageError(f"unexpected argument {rest[0]!r}")
    flags = {name for name in options.longOpt if not name.endswith("=")}
    found = []
    for flag, value in pairs:
        given = flag.lstrip("-")
        name = options.synonyms.get(given) or options.synonyms.get(given.replace("-", "_"))
        if name is None:
            raise usage.UsageError(f"No such option '{given}'")
        isFlag = name in flags
        name = table.aliases.get(name, name)
        found.append(Setting(name, True if isFlag else value, COMMAND_LINE))
    return found


def fromEnvironment(table: OptionTable, environ: Mapping[str, str]) -> list[Setting]:
    """
    C{PREFORK_<OPTION>} for every option (C{PREFORK_MAX_REQUESTS}), and
    below them the platforms' variables the options declare
    (C{WEB_CONCURRENCY} for the number of workers).

    A C{PREFORK_} variable that names no option is left alone.

    @raise SettingError: A flag's value is not a yes or a no.
    """
    found = [
        Setting(name, environ[variable], Origin("env", variable))
        for variable, name in table.environment.items()
        if environ.get(variable)
    ]
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX):
            continue
        key = variable[len(ENV_PREFIX):].lower()
        name = table.canonical(key)
        if name is None or name in table.commandLineOnly and name != "config":
            # The environment is shared with every other program: a
            # variable that names no option is someone else's.
            continue
        text = environ[variable]
        value: Value = text
        if name in table.flags:
            if text.strip().lower() not in _TRUE + _FALSE:
                raise SettingError(f"{variable} must be one of {', '.join(_TRUE + _FALSE[:-1])}, not {text!r}")
            value = text.strip().lower() in _TRUE
        elif name in table.repeatable:
            value = text.split()
        found.append(Setting(name, value, Origin("env", variable)))
    return found


def fromFile(table: OptionTable, path: str) -> list[Setting]:
    """
    The options in the TOML file at C{path}: keys are long option names.

    @raise SettingError: The file cannot be read or parsed, or a key or a
        value's type is wrong.
    """
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as e:
        raise SettingError(f"--config {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise SettingError(f"{path}: not TOML: {e}") from None
    found = []
    for key, raw in document.items():
        name = table.canonical(key)
        if name is None or name in table.commandLineOnly:
            raise SettingError(f"{path}: unknown key {key!r}")
        found.append(Setting(name, _fileValue(table, name, raw, f"{path}: {key}"), Origin("file", path, key)))
    return found


def _fileValue(table: OptionTable, name: str, raw: object, where: str) -> Value:
    if name in table.flags:
        if not isinstance(raw, bool):
            raise SettingError(f"{where} must be true or false, not {_typeName(raw)} {raw!r}")
        return raw
    if name in table.repeatable:
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise SettingError(f"{where} must be a string or an array of strings, not {_typeName(raw)} {raw!r}")
        return list(items)
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise SettingError(f"{where} must be a single string or number, not {_typeName(raw)} {raw!r}")
    return str(raw)


def _typeName(raw: object) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}
    return names.get(type(raw), type(raw).__name__)


def merge(table: OptionTable, *sources: Iterable[Setting]) -> dict[str, Setting]:
    """
    The winning setting of each option, C{sources} given from the lowest
    precedence to the highest.  Within one source the last value of an
    option wins, except that a repeatable option collects them all.

    C{--port} and C{--listen} both say where to listen: the source with the
    higher precedence that gives either decides alone.
    """
    merged: dict[str, Setting] = {}
    for source in sources:
        mine: dict[str, Setting] = {}
        for setting in source:
            if setting.option in table.repeatable:
                earlier = mine.get(setting.option)
                items = setting.value if isinstance(setting.value, list) else [str(setting.value)]
                if earlier is not None and isinstance(earlier.value, list):
                    items = earlier.value + items
                setting = Setting(setting.option, items, setting.origin)
            mine[setting.option] = setting
        if "port" in mine or "listen" in mine:
            merged.pop("port", None)
            merged.pop("listen", None)
        merged.update(mine)
    return merged


def asArguments(settings: Mapping[str, Setting]) -> list[str]:
    """
    The command line that gives the options C{settings} hold.
    """
    arguments = []
    for name, setting in settings.items():
        if isinstance(setting.value, bool):
            if setting.value:
                arguments.append(f"--{name}")
        elif isinstance(setting.value, list):
            arguments.extend(f"--{name}={item}" for item in setting.value)
        else:
            arguments.append(f"--{name}={setting.value}")
    return arguments


def resolve(
    options: usage.Options, table: OptionTable, argv: list[str], environ: Mapping[str, str]
) -> tuple[list[str], dict[str, Setting]]:
    """
    Merge the command line C{argv}, the environment and the file that
    C{--config} (or C{PREFORK_CONFIG}) names.

    @return: The merged command line, and the winning setting of each
        option given anywhere.
    """
    commandLine = fromCommandLine(options, table, argv)
    environment = fromEnvironment(table, environ)
    configs = [s for s in environment + commandLine if s.option == "config"]
    files = fromFile(table, str(configs[-1].value)) if configs else []
    merged = merge(table, files, environment, commandLine)
    merged.pop("config", None)
    return asArguments(merged), merged


def blame(error: usage.UsageError, settings: Mapping[str, Setting]) -> str:
    """
    The message of C{error}, which names an option as C{--name}, naming it
    as the source that gave the value does: C{PREFORK_WORKERS},
    C{prefork.toml: workers}.
    """
    message = str(error)
    match = re.match(r"--([a-z][a-z0-9-]*)", message)
    if match is None or match.group(1) not in settings:
        return message
    origin = settings[match.group(1)].origin
    return origin.name(match.group(1)) + message[match.end():]


def render(table: OptionTable, settings: Mapping[str, Setting], notes: Mapping[str, str] = {}) -> str:
    """
    The effective configuration as a TOML file that C{--config} accepts:
    every option, each followed by a comment saying where its value came
    from.  An option without a value is a comment.

    @param notes: What an option given nowhere comes to, instead of its
        default (C{listen}: the inherited sockets).
    """
    lines = ["# The effective configuration of twistd prefork; --config reads this file as it is."]
    for name in table.names():
        if name in table.commandLineOnly:
            continue
        setting = settings.get(name)
        if setting is None and name in notes:
            lines.append(f"# {name}: {notes[name]}  {DEFAULT.comment()}")
            continue
        if setting is None:
            value: Value | None = table.parameters.get(name)
            if name in table.flags:
                value = False
            elif name in table.repeatable:
                value = []
            origin = DEFAULT
        else:
            value, origin = setting.value, setting.origin
        if value is None or value == []:
            lines.append(f"# {name} is not set  {origin.comment()}")
        else:
            lines.append(f"{name} = {tomlValue(value)}  {origin.comment()}")
    return "\n".join(lines) + "\n"


_INTEGER = re.compile(r"[+-]?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[+-]?(0|[1-9][0-9]*)(\.[0-9]+([eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+)")


def tomlValue(value: Value) -> str:
    """
    C{value} as TOML: numbers as numbers, other text as strings.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_tomlString(item) for item in value) + "]"
    if _INTEGER.fullmatch(value) or _FLOAT.fullmatch(value):
        return value
    return _tomlString(value)


def _tomlString(text: str) -> str:
    # A JSON string is a TOML basic string, but for DEL, which TOML wants
    # escaped.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
