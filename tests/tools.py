"""
What some tests need besides Python: external programs (nginx, Chromium,
Server::Starter, systemd's tools), PyPI, root and IPv6.

A test declares each with L{requires}; C{conftest.py} skips it, naming what
is missing and where it comes from, or, with C{PREFORK_TESTS_REQUIRE_ALL=1}
in the environment (as CI sets it), fails it instead, so that a run can
never pass by skipping.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

#: The environment variable under which a missing requirement is a failure.
REQUIRE_ALL = "PREFORK_TESTS_REQUIRE_ALL"
#: Where Debian puts programs that a user's PATH often leaves out (nginx).
_SYSTEM_DIRECTORIES = ("/usr/sbin", "/sbin")
#: Where Debian's libnginx-mod-stream puts nginx's stream module.
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"

#: The index PyPI serves packages from, unless pip is pointed elsewhere.
_INDEX = "https://pypi.org/simple/"


@dataclass(frozen=True)
class Requirement:
    """
    Something a test needs that a machine with Python alone lacks.

    @ivar name: What the tests call it: a program's name, or C{"pypi"},
        C{"root"}, C{"ipv6"}...
    @ivar source: Where it comes from, said after what is missing.
    @ivar problem: Says why it cannot be used here, or returns L{None}.
    """

    name: str
    source: str
    problem: Callable[[], str | None]


def _program(name: str, package: str) -> Requirement:
    def problem() -> str | None:
        if findProgram(name) is None:
            return f"{name} is not installed (not on PATH, nor in {' or '.join(_SYSTEM_DIRECTORIES)})"
        return None

    return Requirement(name, f"the Debian package {package} provides it", problem)


def _nginxStreamProblem() -> str | None:
    nginx = findProgram("nginx")
    if nginx is None:
        return "nginx is not installed, so neither is its stream module"
    if Path(STREAM_MODULE).exists():
        return None
    built = subprocess.run([nginx, "-V"], capture_output=True, text=True, check=False).stderr
    if "--with-stream " in built + " ":
        return None
    return f"nginx has no stream module (no {STREAM_MODULE}, none built in)"


def _index() -> str:
    return os.environ.get("PIP_INDEX_URL", _INDEX).rstrip("/") + "/"


def _pypiProblem() -> str | None:
    url = _index() + "twisted/"
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            response.read(1)
    except (OSError, urllib.error.URLError) as e:
        return f"PyPI is unreachable ({url}: {e})"
    return None


def _rootProblem() -> str | None:
    if os.geteuid() != 0:
        return f"the tests run as uid {os.geteuid()}, not as root"
    return None


def _ipv6Problem() -> str | None:
    probe = None
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        probe.bind(("::1", 0))
    except OSError as e:
        return f"this machine has no IPv6 loopback (cannot listen on ::1: {e})"
    finally:
        if probe is not None:
            probe.close()
    return None


def _venvProblem() -> str | None:
    if importlib.util.find_spec("ensurepip") is None:
        return "this Python cannot make a virtualenv with pip (no ensurepip)"
    return None


#: Everything a test may require, by name: each program with the Debian
#: package that provides it (.ci/run installs them all).
REQUIREMENTS: dict[str, Requirement] = {
    requirement.name: requirement
    for requirement in [
        _program("nginx", "nginx-light"),
        _program("chromium", "chromium"),
        _program("start_server", "libserver-starter-perl"),
        _program("systemd-socket-activate", "systemd"),
        _program("systemd-analyze", "systemd"),
        _program("kill", "procps"),
        _program("ss", "iproute2"),
        _program("curl", "curl"),
        _program("openssl", "openssl"),
        Requirement("nginx-stream", "the Debian package libnginx-mod-stream provides it", _nginxStreamProblem),
        Requirement("root", "switching user needs root: run the tests as root (CI does)", _rootProblem),
        Requirement("ipv6", "the loopback interface needs ::1 (sysctl net.ipv6.conf.lo.disable_ipv6=0)", _ipv6Problem),
        Requirement("venv", "the Debian package python3-venv provides it", _venvProblem),
        Requirement("pypi", "the test installs the package and its dependencies from it", _pypiProblem),
    ]
}


def findProgram(name: str) -> str | None:
    """
    The path of program C{name}: on PATH, or in the system directories a
    user's PATH may lack.
    """
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *_SYSTEM_DIRECTORIES])
    return shutil.which(name, path=search)


def program(name: str) -> str:
    """
    The path of a program the running test declared with L{requires}.
    """
    assert name in REQUIREMENTS, f"{name} is not a known requirement"
    found = findProgram(name)
    assert found is not None, f"{name} is not installed: declare it with requires({name!r})"
    return found


def requires(*names: str) -> pytest.MarkDecorator:
    """
    Mark a test (or, as C{pytestmark}, a module) as needing each of
    C{names}: skipped when one is missing, failed under L{REQUIRE_ALL}.
    """
    unknown = [name for name in names if name not in REQUIREMENTS]
    if unknown:
        raise ValueError(f"unknown requirements {unknown}: add them to tests/tools.py REQUIREMENTS")
    return pytest.mark.requires(*names)


#: What L{problem} found, by requirement name.
_problems: dict[str, str | None] = {}


def problem(name: str) -> str | None:
    """
    Why requirement C{name} is not met here, or L{None}; found out once per
    run.
    """
    if name not in _problems:
        _problems[name] = REQUIREMENTS[name].problem()
    return _problems[name]


def unmetSoFar() -> list[str]:
    """
    L{unmet} for every requirement a test of this run has declared.
    """
    return unmet(list(_problems))


def unmet(names: list[str]) -> list[str]:
    """
    One line for each of C{names} that is not met: what is missing and
    where it comes from.
    """
    lines = []
    for name in dict.fromkeys(names):
        why = problem(name)
        if why is not None:
            lines.append(f"{why}; {REQUIREMENTS[name].source}")
    return lines


def requireAll() -> bool:
    return os.environ.get(REQUIRE_ALL, "") not in ("", "0")
