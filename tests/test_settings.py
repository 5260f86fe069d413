"""
Options from a TOML file and the environment, their precedence, and
--print-config and --check-config.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

from prefork import settings
from prefork.config import ServerConfig
from prefork.options import BY_NAME, DEFAULT_BACKLOG, OPTIONS, Kind
from prefork.tap import Options
from server import APPS, TIMEOUT, twistd

APP = ("--app", "testapp:application")
LOCAL = "tcp:0:interface=127.0.0.1"


def run(*args: str, env: dict[str, str] | None = None, cwd: Path = APPS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [twistd(), "-n", "--pidfile=", "prefork", *args],
        capture_output=True, text=True, cwd=cwd, timeout=TIMEOUT, env=environment(**(env or {})),
    )


def environment(**extra: str) -> dict[str, str]:
    """
    This process's environment without any PREFORK_ option, plus C{extra}.
    """
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("PREFORK_") and k not in ("PORT", "WEB_CONCURRENCY")
    }
    return {**base, **extra}


def values(toml: str) -> dict[str, object]:
    return tomllib.loads(toml)


def comments(toml: str) -> dict[str, str]:
    """
    Each value's source, from the comment that follows it.
    """
    found = {}
    for line in toml.splitlines():
        match = re.match(r"([a-z-]+) = .*  # (.*)$", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


# The declarations (prefork.options) and what is built from them.


def test_server_config_defaults_are_the_declared_ones() -> None:
    """
    Every field of ServerConfig but the two the server computes is set by
    one option, and defaults to what that option declares.
    """
    declared = {option.field: option for option in OPTIONS if option.field is not None}
    fields = {f.name: f for f in dataclasses.fields(ServerConfig)}
    assert set(fields) - set(declared) == {"pythonPath", "listenerTLS"}
    assert set(declared) <= set(fields)
    for name, option in declared.items():
        assert fields[name].default == option.configDefault, name
    assert ServerConfig().preload is True and ServerConfig().workers == 10


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.text is not None], ids=lambda o: o.name)
def test_default_as_text_checks_back_to_the_default(option) -> None:
    """
    The default --help and --print-config show, given back, is the default:
    the text and the value are one declaration.
    """
    assert option.value(option.text) == option.default
    assert Options().defaults[option.name] == option.text


def test_backlog_default_is_the_endpoints_default() -> None:
    assert BY_NAME["backlog"].default == DEFAULT_BACKLOG


def test_every_declared_spelling_parses() -> None:
    """
    The long name, the short name and each alias of every option reach
    the option, on the command line and in the environment; --help lists
    them all.
    """
    usage = str(Options())
    for option in OPTIONS:
        value = [] if option.kind is Kind.FLAG else ["x"]
        spellings = [[f"--{name}", *value] for name in (option.name, *option.aliases)]
        spellings += [[f"-{option.short}", *value]] if option.short else []
        for argv in spellings:
            found = settings.fromCommandLine(Options(), table(), argv)
            assert [s.option for s in found] == [option.name], argv
        for name in (option.name, *option.aliases):
            assert f"--{name}" in usage, name
            if not option.commandLineOnly or option.name == "config":
                variable = "PREFORK_" + name.upper().replace("-", "_")
                found = settings.fromEnvironment(table(), {variable: "1"})
                assert [s.option for s in found] == [option.name], variable
    assert {s.option for s in settings.fromEnvironment(table(), {"WEB_CONCURRENCY": "3"})} == {"workers"}


def test_print_config_writes_every_option_a_file_may_give() -> None:
    written = {re.match(r"(?:# )?([a-z-]+)", line).group(1) for line in settings.render(table(), {}).splitlines()[1:]}
    assert written == {option.name for option in OPTIONS if not option.commandLineOnly}


# Reading the sources.


def table() -> settings.OptionTable:
    return settings.OptionTable.of(Options.declarations)


def test_file_keys_take_dashes_underscores_and_aliases(tmp_path: Path) -> None:
    path = tmp_path / "prefork.toml"
    path.write_text(
        'max_reqs_per_child = 500\nspare-workers = 2\nlisten = "tcp:1"\nno_preload = true\ngraceful-timeout = 2.5\n'
    )
    found = {s.option: s.value for s in settings.fromFile(table(), str(path))}
    assert found == {
        "max-requests": "500", "spare-workers": "2", "listen": ["tcp:1"], "no-preload": True, "graceful-timeout": "2.5",
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ("wrokers = 3", "unknown key 'wrokers'"),
        ("workers = [1, 2]", "workers must be a single string or number, not array [1, 2]"),
        ("no-preload = 1", "no-preload must be true or false, not integer 1"),
        ("listen = [8080]", "listen must be a string or an array of strings, not array [8080]"),
        ("config = 'other.toml'", "unknown key 'config'"),
        ("workers = ", "not TOML"),
    ],
)
def test_file_errors_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "prefork.toml"
    path.write_text(text + "\n")
    with pytest.raises(settings.SettingError) as raised:
        settings.fromFile(table(), str(path))
    assert str(raised.value).startswith(f"{path}: ") and message in str(raised.value)


def test_environment() -> None:
    found = settings.fromEnvironment(table(), {
        "PREFORK_MAX_REQS_PER_CHILD": "9", "PREFORK_LISTEN": "tcp:1  unix:/x.sock", "PREFORK_NO_PRELOAD": "yes",
        "PREFORK_DISPLAY_TRACEBACKS": "0", "WEB_CONCURRENCY": "3", "PREFORK_SOMETHING_ELSE": "ignored",
    })
    assert {s.option: (s.value, s.origin.where) for s in found} == {
        "max-requests": ("9", "PREFORK_MAX_REQS_PER_CHILD"),
        "listen": (["tcp:1", "unix:/x.sock"], "PREFORK_LISTEN"),
        "no-preload": (True, "PREFORK_NO_PRELOAD"),
        "display-tracebacks": (False, "PREFORK_DISPLAY_TRACEBACKS"),
        "workers": ("3", "WEB_CONCURRENCY"),
    }
    with pytest.raises(settings.SettingError, match="PREFORK_RELOAD must be one of"):
        settings.fromEnvironment(table(), {"PREFORK_RELOAD": "maybe"})


def test_prefork_workers_wins_over_web_concurrency() -> None:
    environ = {"WEB_CONCURRENCY": "3", "PREFORK_WORKERS": "5"}
    merged = settings.merge(table(), settings.fromEnvironment(table(), environ))
    assert merged["workers"].value == "5"


def test_precedence_and_where_to_listen() -> None:
    inFile = settings.Origin("file", "f")
    file = [settings.Setting("workers", "1", inFile), settings.Setting("listen", ["tcp:1"], inFile)]
    env = [settings.Setting("workers", "2", settings.Origin("env", "PREFORK_WORKERS"))]
    line = [
        settings.Setting("port", "3", settings.COMMAND_LINE),
        settings.Setting("listen", "tcp:4", settings.COMMAND_LINE),
        settings.Setting("listen", "tcp:5", settings.COMMAND_LINE),
    ]
    merged = settings.merge(table(), file, env, line)
    assert {name: s.value for name, s in merged.items()} == {"workers": "2", "port": "3", "listen": ["tcp:4", "tcp:5"]}
    # --port alone on the command line replaces the file's listen.
    merged = settings.merge(table(), file, line[:1])
    assert "listen" not in merged and merged["port"].value == "3"


@pytest.mark.parametrize(
    "text", ["8080", "-1", "2.5", "1e3", "007", "1.", "tcp:80", "", 'say "hi"\\\t', "caf\u00e9\x7f", "inf"]
)
def test_toml_values_read_back_the_same(text: str) -> None:
    written = settings.tomlValue(text)
    assert str(tomllib.loads(f"x = {written}")["x"]) == text or tomllib.loads(f"x = {written}")["x"] == float(text)


# Real servers: each source, and their precedence.


@pytest.mark.parametrize(
    "fileText, env, args, workers, limit",
    [
        ("workers = 2\nmax-requests = 7\n", {}, (), 2, 7),
        ("", {"PREFORK_WORKERS": "2", "PREFORK_MAX_REQS_PER_CHILD": "8"}, (), 2, 8),
        ("", {"WEB_CONCURRENCY": "3"}, ("--max-requests", "9"), 3, 9),
        (
            "workers = 1\nmax-requests = 5\n",
            {"PREFORK_WORKERS": "2", "PREFORK_MAX_REQUESTS": "6"},
            ("--max-workers", "3"),
            3,
            6,
        ),
        ("workers = 3\nmax_reqs_per_child = 11\n", {"PREFORK_WORKERS": "2"}, (), 2, 11),
    ],
    ids=["file", "env", "web-concurrency", "command-line-over-env-over-file", "env-over-file"],
)
def test_each_source_and_precedence(serve, tmp_path: Path, fileText: str, env: dict[str, str], args: tuple[str, ...],
                                    workers: int, limit: int) -> None:
    config = tmp_path / "prefork.toml"
    config.write_text(f'app = "testapp:application"\nlisten = ["{LOCAL}"]\nspare-workers = 0\n' + fileText)
    server = serve("--config", str(config), *args, listen=None, env=environment(**env))
    server.waitFor(f"Generation 1 serving with {workers} workers")
    server.waitFor(f"ready, limit {limit} requests")
    assert server.get("/")[0] == 200


def test_port_from_the_environment(serve) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    server = serve(*APP, "--workers", "1", listen=None, env=environment(PORT=str(port)))
    assert server.port == port and server.get("/")[0] == 200


def test_config_file_named_in_the_environment(serve, tmp_path: Path) -> None:
    config = tmp_path / "prefork.toml"
    config.write_text('app = "testapp:application"\nworkers = 2\nspare-workers = 0\n')
    server = serve(env=environment(PREFORK_CONFIG=str(config)))
    server.waitFor("Generation 1 serving with 2 workers")


@pytest.mark.parametrize(
    "fileText, env, expected",
    [
        ("workers = 0\n", {}, "{config}: workers must be a number of at least 1, not '0'"),
        ("max_workers = 'many'\n", {}, "{config}: max_workers must be a number of at least 1, not 'many'"),
        ("listen = ['nonsense:1']\n", {}, "{config}: listen 'nonsense:1': the workers cannot serve 'nonsense'"),
        ("wrokers = 2\n", {}, "{config}: unknown key 'wrokers'"),
        ("", {"PREFORK_MAX_REQUESTS": "-1"}, "PREFORK_MAX_REQUESTS must be a number of at least 0, not '-1'"),
        ("", {"WEB_CONCURRENCY": "lots"}, "WEB_CONCURRENCY must be a number of at least 1, not 'lots'"),
        ("", {"PORT": "http"}, "PORT must be a port number, not 'http'"),
    ],
)
def test_bad_values_are_one_line_and_exit_2(tmp_path: Path, fileText: str, env: dict[str, str], expected: str) -> None:
    config = tmp_path / "prefork.toml"
    config.write_text(fileText)
    result = run("--config", str(config), env=env)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("twistd prefork: " + expected.format(config=config)), result.stderr


# --print-config


def test_print_config_names_each_source(tmp_path: Path) -> None:
    config = tmp_path / "prefork.toml"
    config.write_text('workers = 4\nlisten = ["tcp:8080", "unix:/run/app.sock"]\nmax_reqs_per_child = 500\n')
    result = run("--config", str(config), "--threads", "0", "--print-config",
                 env={"PREFORK_MAX_REQUESTS": "300", "PREFORK_NO_PRELOAD": "1"})
    assert (result.returncode, result.stderr) == (0, "")
    assert values(result.stdout)["workers"] == 4
    assert values(result.stdout)["listen"] == ["tcp:8080", "unix:/run/app.sock"]
    assert comments(result.stdout) | {"app": "default"} == {
        **dict.fromkeys(comments(result.stdout), "default"),
        "workers": f"file {config}", "listen": f"file {config}", "max-requests": "env PREFORK_MAX_REQUESTS",
        "no-preload": "env PREFORK_NO_PRELOAD", "threads": "command line",
    }
    assert "# min-requests is not set  # default" in result.stdout


def test_print_config_read_back_gives_the_same_configuration(tmp_path: Path) -> None:
    config = tmp_path / "prefork.toml"
    config.write_text(
        'workers = 4\nscript_name = "/app"\naccess-log-format = "{remote_addr} \\"{request}\\" {status}"\n'
        'graceful-timeout = 2.5\n'
    )
    first = run("--config", str(config), "--print-config", *APP, "--listen", "tcp:8081",
                "--reload-extra-file", "/etc/hosts", "--display-tracebacks",
                env={"PREFORK_MIN_REQUESTS": "10", "PREFORK_HOOKS": "recordinghooks"})
    assert first.returncode == 0, first.stderr
    printed = tmp_path / "printed.toml"
    printed.write_text(first.stdout)
    second = run("--config", str(printed), "--print-config")
    assert second.returncode == 0, second.stderr
    assert values(second.stdout) == values(first.stdout)
    assert set(comments(second.stdout).values()) == {f"file {printed}"}
    # And the ServerConfig each builds is the same.
    options = [Options(), Options()]
    cwd = os.getcwd()
    os.chdir(APPS)
    try:
        options[0].parseOptions(["--config", str(printed)])
        options[1].parseOptions(["--config", str(config), *APP, "--listen", "tcp:8081",
                                 "--reload-extra-file", "/etc/hosts", "--display-tracebacks",
                                 "--min-requests", "10", "--hooks", "recordinghooks"])
    finally:
        os.chdir(cwd)
    assert options[0]["config"] == options[1]["config"]
    assert options[0]["listen"] == options[1]["listen"]


# --check-config


def test_check_config_good_opens_nothing(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    log = tmp_path / "access.log"
    try:
        result = run("--check-config", *APP, "--hooks", "recordinghooks", "--listen", f"tcp:{port}:interface=127.0.0.1",
                     "--access-log", str(log), "--workers", "3", env={"HOOKS_LOG": str(tmp_path / "hooks.jsonl")})
    finally:
        taken.close()
    assert result.returncode == 0, result
    assert result.stdout.splitlines() == [
        (
            "twistd prefork: OK: would serve testapp:application with 3 workers"
            f" on tcp:{port}:interface=127.0.0.1, hooks recordinghooks"
        )
    ]
    assert result.stderr == ""
    assert not log.exists() and not (tmp_path / "hooks.jsonl").exists()


@pytest.mark.parametrize(
    "args, status, expected",
    [
        (("--app", "nosuchmodule:app"), 1, "cannot import --app 'nosuchmodule:app': no module named 'nosuchmodule'"),
        (("--app", "testapp:nothing"), 1, "--app 'testapp:nothing': 'testapp' has no attribute 'nothing'"),
        ((*APP, "--hooks", "nosuchhooks"), 1, "cannot import --hooks 'nosuchhooks': no module named 'nosuchhooks'"),
        (
            (*APP, "--hooks", "brokenhooks"), 1,
            "cannot import --hooks 'brokenhooks': ZeroDivisionError: division by zero",
        ),
        ((*APP, "--hooks", "brokenhooks:nothing"), 1, "cannot import --hooks 'brokenhooks:nothing'"),
        ((*APP, "--hooks", "testapp:NOT_CALLABLE"), 0, "OK"),
        ((*APP, "--hooks", "uncallablehooks"), 1, "--hooks 'uncallablehooks': post_fork is not callable"),
        ((*APP, "--workers", "0"), 2, "--workers must be a number of at least 1, not '0'"),
        ((*APP, "--hooks", "no such"), 2, "--hooks 'no such' is not of the form MODULE or MODULE:NAME"),
    ],
)
def test_check_config_bad(tmp_path: Path, args: tuple[str, ...], status: int, expected: str) -> None:
    (tmp_path / "brokenhooks.py").write_text("1 / 0\n")
    (tmp_path / "uncallablehooks.py").write_text("post_fork = 'later'\n")
    result = run("--check-config", "--pythonpath", str(tmp_path), *args)
    assert result.returncode == status, result
    output = (result.stdout + result.stderr).strip().splitlines()
    assert len(output) == 1 and expected in output[0], result


def test_help_lists_the_new_options() -> None:
    result = run("--help")
    assert result.returncode == 0
    for option in ("--config", "--hooks", "--reload", "--reload-extra-file", "--print-config", "--check-config"):
        assert option in result.stdout
