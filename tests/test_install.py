"""
README's first command on a machine that has never seen the project: a new
virtualenv, C{pip install .} from the checkout, C{twistd -n prefork}.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from server import TIMEOUT, Server, descendants, waitUntil
from superdaemon import freePort
from tools import requires

CHECKOUT = Path(__file__).parent.parent
#: What a working checkout may hold besides the project: left out of the
#: copy, and the copy keeps what the install builds out of the checkout.
NOT_THE_PROJECT = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", "dropin.cache",
    ".pytest_cache", ".mypy_cache", ".ruff_cache", ".tox", ".venv", "venv",
)
#: Installing Twisted and its dependencies from PyPI.
INSTALL_TIMEOUT = 600


def cleanEnvironment(venv: Path) -> dict[str, str]:
    """
    The environment of a shell with C{venv} activated, and nothing that
    would bring this checkout's code in.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", os.defpath)])
    env["VIRTUAL_ENV"] = str(venv)
    return env


def run(command: list[str], cwd: Path, env: dict[str, str]) -> None:
    result = subprocess.run(
        command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=INSTALL_TIMEOUT, check=False,
    )
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}"


def title(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


@requires("venv", "pypi")
def test_readme_install_serves_the_demo(servers: list[Server], tmp_path: Path) -> None:
    """
    C{pip install . && twistd -n prefork}, as README's quick start has it,
    in a new virtualenv, from a copy of the checkout (so that the build
    leaves nothing in the checkout), serves the demo, with the process
    titles of a production install, and stops cleanly on TERM to its pid.

    The one change to README's command is C{--port}: the default, port 8080
    on every interface, may be taken on a shared machine, so the test gives
    a free port with the option README documents for it.
    """
    checkout, venv, workdir = tmp_path / "checkout", tmp_path / "venv", tmp_path / "run"
    shutil.copytree(CHECKOUT, checkout, ignore=NOT_THE_PROJECT)
    workdir.mkdir()
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, dict(os.environ))
    env = cleanEnvironment(venv)
    run(["pip", "install", "."], checkout, env)
    installed = subprocess.run(
        ["python", "-c", "import prefork, setproctitle; print(prefork.__file__)"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )
    assert installed.stdout.startswith(f"{venv}/lib/"), installed

    server = Server(listen=None, cwd=workdir, env=env)
    # Found on the PATH of the activated virtualenv, as in a shell.
    server.command = ["twistd", "-n", "prefork", "--port", str(freePort())]
    servers.append(server)
    server.start().serving()
    status, headers, body = server.get("/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"<h1>twisted-prefork</h1>" in body
    # setproctitle came with the plain install: ps tells the processes apart.
    titles = sorted(title(pid) for pid in descendants(server.pid))
    assert "prefork template [prefork.demo:application] gen 1" in titles, titles
    expected = "prefork master [prefork.demo:application] gen 1 workers 10"
    waitUntil(lambda: title(server.pid) == expected, what="the master's title")
    assert server.stop() == 0
