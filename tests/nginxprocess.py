"""
A real nginx for a test: one of the recipes in contrib/nginx pointed at the
test's socket and port, run with its files in a directory of its own, and
stopped, with its workers, by their pids.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from server import TIMEOUT, alive, descendants, waitUntil
from tools import program


def recipe(path: Path, port: int, socketPath: str) -> str:
    """
    The recipe at C{path}, listening on loopback port C{port} and proxying
    to the UNIX socket C{socketPath}.
    """
    site = path.read_text().replace("/run/prefork/prefork.sock", socketPath)
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    assert socketPath in site and f"127.0.0.1:{port}" in site
    return site


def mainConfig(root: Path, body: str, load: str = "") -> str:
    """
    nginx's main configuration for a test: one worker, run as this user,
    keeping its pid and error log in C{root}, around C{body} (an C{http} or
    C{stream} block), after C{load} (a C{load_module} line, if any).
    """
    return f"""{load}
daemon off;
master_process on;
user {pwd.getpwuid(os.getuid()).pw_name};
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 256; }}
{body}
"""


@contextmanager
def runningNginx(root: Path, config: Path) -> Iterator[None]:
    """
    nginx on C{config}, keeping its files in C{root}, from the moment it
    listens until the block ends.
    """
    process = subprocess.Popen(
        [program("nginx"), "-p", str(root), "-e", str(root / "error.log"), "-c", str(config)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    workers: set[int] = set()
    try:
        waitUntil(lambda: (root / "nginx.pid").exists() or process.poll() is not None, what="nginx to listen")
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        workers = descendants(process.pid)
        yield
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for pid in workers:
            waitUntil(lambda pid=pid: not alive(pid), what=f"nginx worker {pid} to exit")
