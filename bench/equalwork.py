"""
Equal work: before a server is timed, one response of it is compared with
the response of twisted-prefork (the reference) to the same request, so
that no ratio compares servers that do different work.

Compared: the status code, the header field names (as a multiset, case
folded) less L{IGNORED} and Content-Length, whether there is a
Content-Length and its value, and the body.  Content-Length or
Transfer-Encoding: chunked is framing work the reference chose, so either
one missing or extra is a difference.  Not compared: the HTTP version and
reason phrase of the status line (Twiggy answers every request with
HTTP/1.0), and the values of the other fields.

Its unit test is tests/test_bench_equal_work.py (no server started)::

    PYTHONPATH=$PWD python -m pytest tests/test_bench_equal_work.py -q
"""

from __future__ import annotations

import http.client
from collections import Counter
from dataclasses import dataclass

#: Fields whose presence is per process or per connection, or that a server
#: adds by itself at no cost the application pays: left out of the
#: comparison.  Date and Server are what some servers add to every answer;
#: X-Pid is the worker's pid (the app sets it, see benchapp.py); Connection,
#: Keep-Alive and Proxy-Connection say what happens to the connection, which
#: wrk decides for every server alike (keep-alive or Connection: close).
IGNORED = frozenset({"date", "server", "x-pid", "connection", "keep-alive", "proxy-connection"})


@dataclass(frozen=True)
class Response:
    """
    What a server answered: the status code, the header fields in order
    (names as sent) and the whole body, framing removed.
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def contentLength(self) -> str | None:
        values = [value for name, value in self.headers if name.lower() == "content-length"]
        return ",".join(values) if values else None

    def fieldNames(self) -> Counter[str]:
        """
        The names of the fields compared by name: neither L{IGNORED} nor
        Content-Length (compared on its own, with its value).
        """
        return Counter(name.lower() for name, _ in self.headers
                       if name.lower() not in IGNORED and name.lower() != "content-length")


def differences(reference: Response, other: Response) -> list[str]:
    """
    How C{other} differs from C{reference}, one short phrase each; empty
    when both did the same work.
    """
    found = []
    if other.status != reference.status:
        found.append(f"status {other.status}, not {reference.status}")
    mine, theirs = other.fieldNames(), reference.fieldNames()
    extra, lacking = sorted((mine - theirs).elements()), sorted((theirs - mine).elements())
    if extra:
        found.append(f"extra header {', '.join(extra)}")
    if lacking:
        found.append(f"no header {', '.join(lacking)}")
    length, referenceLength = other.contentLength(), reference.contentLength()
    if length != referenceLength and (length is None or referenceLength is None):
        found.append("no Content-Length" if length is None else f"Content-Length {length} where the reference has none")
    elif length != referenceLength:
        found.append(f"Content-Length {length}, not {referenceLength}")
    if other.body != reference.body:
        if len(other.body) != len(reference.body):
            found.append(f"body of {len(other.body)} bytes, not {len(reference.body)}")
        else:
            found.append(f"body differs (same length, {len(other.body)} bytes)")
    return found


def fetch(port: int, method: str = "GET", body: bytes | None = None, timeout: float = 10.0) -> Response:
    """
    One request to 127.0.0.1:C{port}, as wrk makes it (HTTP/1.1,
    keep-alive), and the whole response.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, "/", body=body,
                           headers={"Content-Type": "application/octet-stream"} if body is not None else {})
        answer = connection.getresponse()
        content = answer.read()
        return Response(answer.status, tuple(answer.getheaders()), content)
    finally:
        connection.close()
