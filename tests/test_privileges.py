"""
twistd's --uid, --gid and --umask: sockets opened as root, the template and
every worker run as the user, and a user that cannot run the server is
told in one line.

The tests need root.  The interpreter running them may sit where the user
cannot reach it (pyenv below a mode 700 /root): then the server runs in a
mount namespace of its own in which that directory is searchable, its
contents the same.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import twisted

import prefork
from server import APPS, TIMEOUT, Server, descendants, twistd
from tools import requires

pytestmark = requires("root")

USER = "nobody"


def user() -> pwd.struct_passwd:
    return pwd.getpwnam(USER)


def group() -> str:
    return grp.getgrgid(user().pw_gid).gr_name


def searchable(directory: Path, account: pwd.struct_passwd) -> bool:
    mode = directory.stat()
    if mode.st_uid == account.pw_uid:
        return bool(mode.st_mode & stat.S_IXUSR)
    if mode.st_gid in os.getgrouplist(account.pw_name, account.pw_gid):
        return bool(mode.st_mode & stat.S_IXGRP)
    return bool(mode.st_mode & stat.S_IXOTH)


def hidden() -> dict[Path, set[str]]:
    """
    The directories the user cannot search on the way to what the server
    runs (the interpreter, the standard library, Twisted, this server, the
    test apps), each with the entries below it on those ways.
    """
    found: dict[Path, set[str]] = {}
    needed = [Path(sys.executable).resolve(), Path(sys.base_prefix).resolve(), Path(twisted.__file__).resolve().parent,
              Path(prefork.__file__).resolve().parent, APPS.resolve()]
    for path in needed:
        for ancestor in reversed(path.parents):
            if not searchable(ancestor, user()):
                found.setdefault(ancestor, set()).add(path.relative_to(ancestor).parts[0])
                break
    return found


def namespace() -> tuple[str, ...]:
    """
    A command prefix that runs its command where every hidden directory is
    a searchable tmpfs holding the same entries on the way.
    """
    steps = ["set -e", 'hold=$(mktemp -d)']
    for n, (directory, entries) in enumerate(sorted(hidden().items())):
        for m, entry in enumerate(sorted(entries)):
            steps += [f'mkdir "$hold/{n}-{m}"', f'mount --bind {shlex.quote(str(directory / entry))} "$hold/{n}-{m}"']
        steps.append(f"mount -t tmpfs -o mode=0755 prefork-test {shlex.quote(str(directory))}")
        for m, entry in enumerate(sorted(entries)):
            target = shlex.quote(str(directory / entry))
            steps += [f"mkdir {target}", f'mount --move "$hold/{n}-{m}" {target}']
    steps.append('exec "$@"')
    return ("unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(steps), "sh")


def freeLowPort() -> int:
    for port in range(700, 1024):
        probe = socket.socket()
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            probe.close()
        return port
    pytest.skip("no free port below 1024")


def uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def asUser(server: Server, *twistdArgs: str) -> Server:
    at = server.command.index("prefork")
    server.command[at:at] = list(twistdArgs)
    return server


@pytest.fixture
def prefix() -> tuple[str, ...]:
    if not hidden():
        return ()
    if shutil.which("unshare") is None or subprocess.run(["unshare", "--mount", "true"]).returncode != 0:
        pytest.skip(f"{USER} cannot reach the interpreter, and no mount namespace can be made")
    return namespace()


def test_sockets_as_root_processes_as_the_user(servers, prefix) -> None:
    port = freeLowPort()
    server = asUser(Server("--app", "testapp:application", "--workers", "2", listen=f"tcp:{port}:interface=127.0.0.1",
                           prefix=prefix), "--uid", USER, "--gid", group())
    servers.append(server)
    server.start().serving()
    assert server.port == port
    worker = int(server.get("/")[2])
    processes = descendants(server.pid) | {server.pid}
    assert worker in processes and len(processes) >= 4
    assert {uid(pid) for pid in processes} == {user().pw_uid}

    # A reload starts a new Python, as the user.
    server.signal(signal.SIGHUP)
    server.waitFor("Generation 2 serving")
    server.waitFor("Generation 1 has ended")
    worker = int(server.get("/")[2])
    processes = descendants(server.pid) | {server.pid}
    assert worker in processes and {uid(pid) for pid in processes} == {user().pw_uid}
    assert server.stop() == 0


def test_a_unix_socket_made_as_root_served_as_the_user(servers, prefix, tmp_path: Path) -> None:
    """
    Workers running as the user serve on a UNIX socket root made, and leave
    its owner and mode as they were.
    """
    path = tmp_path / "app.sock"
    server = asUser(Server("--app", "testapp:application", "--workers", "2", listen=f"unix:{path}:mode=600",
                           prefix=prefix), "--uid", USER, "--gid", group())
    servers.append(server)
    server.start().serving()
    client = socket.socket(socket.AF_UNIX)
    client.settimeout(TIMEOUT)
    client.connect(str(path))
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    response = b""
    while chunk := client.recv(4096):
        response += chunk
    client.close()
    assert response.startswith(b"HTTP/1.1 200 ")
    assert int(response.partition(b"\r\n\r\n")[2]) in descendants(server.pid)
    found = path.stat()
    assert (found.st_uid, stat.S_IMODE(found.st_mode)) == (0, 0o600)


def test_a_user_that_cannot_run_the_server_is_one_line(tmp_path: Path) -> None:
    if hidden():
        # The user cannot reach the interpreter here.
        cwd, expected = APPS, f"user {USER} (uid {user().pw_uid}) cannot run the Python interpreter "
    else:
        cwd = tmp_path / "private"
        cwd.mkdir(mode=0o700)
        expected = f"user {USER} (uid {user().pw_uid}) cannot run the server with "
    result = subprocess.run(
        [twistd(), "-n", "--pidfile=", "--uid", USER, "prefork", "--app", "testapp:application",
         "--pythonpath", str(APPS), "--listen", "tcp:0:interface=127.0.0.1"],
        capture_output=True, text=True, cwd=cwd, timeout=TIMEOUT,
    )
    assert result.returncode == 1
    # twistd's log has standard error by then: one line, no traceback.
    output = (result.stdout + result.stderr).splitlines()
    assert not [line for line in output if "Traceback" in line]
    assert [line for line in output if "twistd prefork:" in line] == [output[-1]] and expected in output[-1], output
    assert output[-1].endswith(("Permission denied", f"PermissionError: [Errno 13] Permission denied: '{cwd}'"))


def test_umask_applies_to_what_the_workers_create(servers, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    server = asUser(
        Server("--app", "testapp:application", "--workers", "1", "--access-log", str(log)), "--umask", "0077"
    )
    servers.append(server)
    server.start().serving()
    assert server.get("/")[0] == 200
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert server.stop() == 0
