"""
C{--backlog}: the listen queue of every socket the server opens, seen from
outside with C{ss} (the Send-Q of a listening socket is its backlog), on
the real server and on sockets opened as the master opens them; and the
option read from every source, as every option is.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from twisted.internet import reactor

from certs import makeCertificate
from prefork.master.endpoints import MAX_BACKLOG, backlogAboveCap, kernelBacklogCap, listenEndpoint
from prefork.master.sockets import ListeningSocket, listen
from prefork.options import DEFAULT_BACKLOG
from server import TIMEOUT, Server
from test_settings import APP, run, values
from tools import program, requires

pytestmark = requires("ss")

LOCAL = "tcp:0:interface=127.0.0.1"


def listenQueue(address: str) -> int:
    """
    The backlog of the listening socket at C{address} (C{127.0.0.1:PORT},
    C{[::1]:PORT} or a UNIX socket's path), as C{ss} reports it.
    """
    output = subprocess.run(
        [program("ss"), "-H", "-l", "-n", "-t", "-x"], capture_output=True, text=True, check=True, timeout=TIMEOUT
    ).stdout
    for line in output.splitlines():
        words = line.split()
        if address in words and "LISTEN" in words:
            return int(words[words.index("LISTEN") + 2])
    raise AssertionError(f"ss shows no listening socket at {address}:\n{output}")


def expectedQueue(backlog: int) -> int:
    cap = kernelBacklogCap()
    return backlog if cap is None else min(backlog, cap)


def addresses(server: Server) -> list[str]:
    """
    Where the server listens, as C{ss} writes it, in the order of its
    C{Listening on} lines.
    """
    found = re.findall(r"Listening on (?:https?://(\S+?)/|unix:(\S+))$", server.output, re.MULTILINE)
    return [tcp or path for tcp, path in found]


def opened(description: str, backlog: int = DEFAULT_BACKLOG) -> ListeningSocket:
    return listen(listenEndpoint(reactor, description, backlog).endpoint, description)


# The real server.


def test_backlog_of_every_socket_the_server_opens(serve, tmp_path: Path) -> None:
    """
    C{--backlog 500} on a TCP and a UNIX socket, and an endpoint's own
    C{backlog=} on another, still so once the workers have adopted them
    (Twisted's UNIX port would listen again with 50 in each worker).
    """
    path = tmp_path / "app.sock"
    server = serve(*APP, "--backlog", "500", "--workers", "2", "--listen", f"unix:{path}",
                   "--listen", f"{LOCAL}:backlog=77")
    tcp, unix, own = addresses(server)
    assert unix == str(path)
    assert server.get("/")[0] == 200
    assert [listenQueue(tcp), listenQueue(unix), listenQueue(own)] == [expectedQueue(500), expectedQueue(500), 77]


def test_the_default_backlog_is_gunicorns(serve) -> None:
    server = serve(*APP, "--workers", "1")
    [tcp] = addresses(server)
    assert listenQueue(tcp) == expectedQueue(2048)


def test_above_somaxconn_the_kernel_caps_it_and_the_log_says_so(serve) -> None:
    cap = kernelBacklogCap()
    if cap is None or cap >= MAX_BACKLOG:
        pytest.skip("net.core.somaxconn cannot be read here, or caps nothing")
    server = serve(*APP, "--workers", "1", "--backlog", str(cap + 1))
    [tcp] = addresses(server)
    assert listenQueue(tcp) == cap
    server.waitFor(rf"--backlog {cap + 1} is above net\.core\.somaxconn: the kernel makes each listen queue {cap} long")


# Sockets opened as the master opens them.


@pytest.mark.parametrize(
    "description, backlog, expected",
    [
        (LOCAL, 321, 321),
        (f"{LOCAL}:backlog=33", 321, 33),
        ("tcp:0:127.0.0.1:34", 321, 34),
        ("tcp6:0:interface=\\:\\:1", 322, 322),
        ("tcp6:0:35:interface=\\:\\:1", 322, 35),
    ],
)
def test_tcp_endpoints(description: str, backlog: int, expected: int) -> None:
    listening = opened(description, backlog)
    try:
        host, port = listening.socket.getsockname()[:2]
        assert listenQueue(f"[{host}]:{port}" if ":" in host else f"{host}:{port}") == expected
    finally:
        listening.close()


@pytest.mark.parametrize("suffix, expected", [("", 323), (":backlog=36", 36), (":666:37", 37)])
def test_unix_endpoints(tmp_path: Path, suffix: str, expected: int) -> None:
    listening = opened(f"unix:{tmp_path / 's.sock'}{suffix}", 323)
    try:
        assert listenQueue(str(tmp_path / "s.sock")) == expected
    finally:
        listening.close()


@requires("openssl")
@pytest.mark.parametrize("suffix, expected", [("", 324), (":backlog=38", 38)])
def test_tls_endpoints(tmp_path: Path, suffix: str, expected: int) -> None:
    key, certificate = makeCertificate(tmp_path)
    description = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={certificate}{suffix}"
    listening = opened(description, 324)
    try:
        assert listenQueue(f"127.0.0.1:{listening.socket.getsockname()[1]}") == expected
    finally:
        listening.close()


def test_kernel_cap(tmp_path: Path) -> None:
    somaxconn = tmp_path / "somaxconn"
    somaxconn.write_text("4096\n")
    assert kernelBacklogCap(str(somaxconn)) == 4096
    assert not backlogAboveCap(4096, str(somaxconn)) and backlogAboveCap(4097, str(somaxconn))
    assert kernelBacklogCap(str(tmp_path / "none")) is None
    assert not backlogAboveCap(MAX_BACKLOG, str(tmp_path / "none"))


# The option, from every source.


@pytest.mark.parametrize(
    "args, env, fileText, expected",
    [
        (("--backlog", "0"), {}, "", "--backlog must be a number from 1 to 2147483647, not '0'"),
        (("--backlog", "2147483648"), {}, "", "--backlog must be a number from 1 to 2147483647, not '2147483648'"),
        ((), {"PREFORK_BACKLOG": "lots"}, "", "PREFORK_BACKLOG must be a number from 1 to 2147483647, not 'lots'"),
        ((), {}, "backlog = -1\n", "{config}: backlog must be a number from 1 to 2147483647, not '-1'"),
        (("--check-config",), {}, "backlog = 'x'\n", "{config}: backlog must be a number from 1 to 2147483647"),
    ],
)
def test_bad_backlog_is_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], fileText: str, expected: str
) -> None:
    config = tmp_path / "prefork.toml"
    config.write_text(fileText)
    result = run(*APP, "--config", str(config), *args, env=env)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("twistd prefork: " + expected.format(config=config)), result.stderr


def test_backlog_from_each_source(tmp_path: Path) -> None:
    config = tmp_path / "prefork.toml"
    config.write_text("backlog = 1000\n")
    assert values(run("--print-config").stdout)["backlog"] == DEFAULT_BACKLOG == 2048
    assert "backlog = 2048  # default" in run("--print-config").stdout
    assert "backlog = 1000  # file" in run("--config", str(config), "--print-config").stdout
    fromEnv = run("--config", str(config), "--print-config", env={"PREFORK_BACKLOG": "900"}).stdout
    assert "backlog = 900  # env PREFORK_BACKLOG" in fromEnv
    fromCommandLine = run("--config", str(config), "--backlog", "800", "--print-config",
                          env={"PREFORK_BACKLOG": "900"}).stdout
    assert "backlog = 800  # command line" in fromCommandLine
    checked = run(*APP, "--backlog", "100", "--check-config")
    assert checked.returncode == 0 and checked.stdout.startswith("twistd prefork: OK"), checked
    assert "--backlog" in run("--help").stdout
