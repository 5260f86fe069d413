"""
Bad input gets one clear line and a non-zero exit, never a traceback wall or
a respawn storm.
"""

from __future__ import annotations

import socket
import subprocess

import pytest

from server import APPS, TIMEOUT, Server, twistd


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [twistd(), "-n", "--pidfile=", "prefork", *args],
        capture_output=True, text=True, cwd=APPS, timeout=TIMEOUT,
    )


def failedStart(servers, *args: str) -> Server:
    server = Server(*args)
    servers.append(server)
    server.start()
    assert server.wait() != 0
    server.waitFor("<EOF>")
    return server


@pytest.mark.parametrize(
    "app, message",
    [
        ("nosuchmodule:application", "cannot import --app 'nosuchmodule:application': no module named 'nosuchmodule'"),
        ("testapp:missing", "--app 'testapp:missing': 'testapp' has no attribute 'missing'"),
        ("testapp:NOT_CALLABLE", "--app 'testapp:NOT_CALLABLE' is not callable"),
    ],
)
@pytest.mark.parametrize("preload", [True, False])
def test_bad_app(servers, app: str, message: str, preload: bool) -> None:
    args = ["--app", app, "--workers", "3"] + ([] if preload else ["--no-preload"])
    server = failedStart(servers, *args)
    assert [line for line in server.lines if message in line][:1], server.output
    assert "Traceback" not in server.output
    # One failure is enough: no worker is started again and again.
    assert server.output.count(message) <= 3


def test_app_raising_at_import_is_reported(servers, tmp_path) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('deploy went wrong')\n")
    server = failedStart(servers, "--app", "broken:application", "--pythonpath", str(tmp_path))
    assert "cannot import --app 'broken:application': RuntimeError: deploy went wrong" in server.output


def test_address_in_use() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        result = run("--listen", f"tcp:{port}:interface=127.0.0.1")
    finally:
        taken.close()
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        (
            f"twistd prefork: cannot listen on tcp:{port}:interface=127.0.0.1: "
            f"Couldn't listen on 127.0.0.1:{port}: [Errno 98] Address already in use."
        )
    ]


@pytest.mark.parametrize(
    "args, named",
    [
        (["--workers", "0"], "--workers"),
        (["--workers", "many"], "--workers"),
        (["--max-requests", "-1"], "--max-requests"),
        (["--min-requests", "9", "--max-requests", "5"], "--min-requests"),
        (["--graceful-timeout", "soon"], "--graceful-timeout"),
        (["--listen", "nonsense:1"], "--listen"),
        (["--app", "no colon"], "--app"),
        (["--wrokers", "2"], "wrokers"),
        (["--limit-request-line", "0"], "--limit-request-line"),
        (["--limit-request-fields", "many"], "--limit-request-fields"),
        (["--limit-request-field-size", "-5"], "--limit-request-field-size"),
        (["--limit-request-body", "-1"], "--limit-request-body"),
        (["--header-timeout", "0"], "--header-timeout"),
        (["--keepalive-timeout", "soon"], "--keepalive-timeout"),
        (["--keepalive-timeout", "nan"], "--keepalive-timeout"),
        (["--script-name", "app"], "--script-name"),
        (["--forwarded-allow-ips", "10.0.0.1,not-an-ip"], "--forwarded-allow-ips"),
    ],
)
def test_bad_option(args: list[str], named: str) -> None:
    result = run(*args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.stderr
    assert result.stdout == ""
