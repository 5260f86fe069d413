"""
The protocol options: their defaults, as served and as --help tells them
(test_errors checks that a bad value gets one clear line).
"""

from __future__ import annotations

import subprocess

from rawhttp import exchange
from server import APPS, twistd


def statuses(port: int, request: bytes) -> list[int]:
    responses, reader = exchange(port, request, count=1)
    reader.sock.close()
    return [r.status for r in responses]


def test_default_limits(serve) -> None:
    server = serve("--app", "testapp:validated", "--workers", "1")
    line = b"GET /" + b"a" * (4094 - len(b"GET / HTTP/1.1")) + b" HTTP/1.1\r\n"
    host = b"Host: x\r\n"
    assert statuses(server.port, line + host + b"\r\n") == [200]
    assert statuses(server.port, b"GET /" + b"a" * 4094 + b" HTTP/1.1\r\n" + host + b"\r\n") == [414]
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(99))
    assert statuses(server.port, b"GET / HTTP/1.1\r\n" + host + fields + b"\r\n") == [200]
    assert statuses(server.port, b"GET / HTTP/1.1\r\n" + host + fields + b"X-Last: v\r\n\r\n") == [431]
    field = b"X-Long: " + b"v" * (8190 - len(b"X-Long: ")) + b"\r\n"
    assert statuses(server.port, b"GET / HTTP/1.1\r\n" + host + field + b"\r\n") == [200]
    assert statuses(server.port, b"GET / HTTP/1.1\r\n" + host + b"X-Long: v" + field + b"\r\n") == [431]
    # No body limit by default.
    body = b"b" * 5_000_000
    request = b"POST /roundtrip HTTP/1.1\r\n" + host + b"Content-Length: %d\r\n\r\n" % len(body) + body
    assert statuses(server.port, request) == [200]


def test_help_lists_the_protocol_options() -> None:
    result = subprocess.run([twistd(), "prefork", "--help"], capture_output=True, text=True, cwd=APPS, timeout=60)
    text = " ".join(result.stdout.split())
    for option, default in [
        ("--limit-request-line", "4094"),
        ("--limit-request-fields", "100"),
        ("--limit-request-field-size", "8190"),
        ("--limit-request-body", "0"),
        ("--header-timeout", "10"),
        ("--keepalive-timeout", "5"),
        ("--forwarded-allow-ips", "127.0.0.1"),
    ]:
        assert option in text
        assert f"[default: {default}]" in text.split(option + "=", 1)[1][:300], option
    assert "--script-name" in text and "--display-tracebacks" in text
