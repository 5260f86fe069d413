"""
Reading a test server's status page: its JSON, its metrics, its HTML, its
probes.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from server import TIMEOUT, Server

#: The option that puts the status page on an ephemeral loopback port.
STATUS = ("--status", "tcp:0:interface=127.0.0.1")


def statusPort(server: Server) -> int:
    return int(server.waitFor(r"Status page on http://127\.0\.0\.1:(\d+)/").group(1))


def fetch(server: Server, path: str) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", statusPort(server), timeout=TIMEOUT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("content-type", ""), response.read()
    finally:
        connection.close()


def probe(port: int, path: str) -> tuple[int, str] | None:
    """
    The status and body of a GET of C{path} on the status port; L{None}
    once nothing listens there (a connection the kernel took just as the
    master closed its socket is reset, not refused).
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    except (ConnectionRefusedError, ConnectionResetError):
        return None
    finally:
        connection.close()


def status(server: Server) -> dict[str, Any]:
    code, contentType, body = fetch(server, "/status.json")
    assert (code, contentType) == (200, "application/json")
    return json.loads(body)


def metrics(server: Server) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """
    The server's metrics, parsed by prometheus-client: by sample name, the
    value of each set of labels.
    """
    code, contentType, body = fetch(server, "/metrics")
    assert code == 200 and contentType.startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples
