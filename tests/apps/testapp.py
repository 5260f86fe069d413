"""
The WSGI application the tests serve.
"""

import json
import os
import signal
import threading
import time
from urllib.parse import parse_qs
from wsgiref.validate import validator

NOT_CALLABLE = 42
#: What /allocate keeps alive, so that the worker's memory stays used.
_hoard = []


def _guarded(environ, seconds, marker, release=None):
    """
    Work under the exit guard: it lasts C{seconds}, or, given the path of a
    FIFO as C{release}, until the test opens that FIFO for writing.
    """
    guard = environ["prefork.exit_guard"]
    guard.begin()

    def work():
        try:
            if release is None:
                time.sleep(seconds)
            else:
                with open(release, "rb") as fifo:
                    fifo.read()
            with open(marker, "w") as f:
                f.write(str(os.getpid()))
        finally:
            guard.end()

    threading.Thread(target=work).start()


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    headers = [("Content-Type", "text/plain")]
    if path == "/echo":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        start_response("200 OK", headers)
        return [body]
    if path == "/stream":
        start_response("200 OK", headers)
        return (b"chunk %d\n" % i for i in range(int(query.get("n", 5))))
    if path == "/big":
        # A large body made one MiB at a time, as a client takes it.
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (b"x" * 1048576 for _ in range(int(query["mb"])))
    if path == "/count":
        stream, received = environ["wsgi.input"], 0
        while chunk := stream.read(65536):
            received += len(chunk)
        start_response("200 OK", headers)
        return [str(received).encode()]
    if path == "/environ":
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({k: v for k, v in environ.items() if isinstance(v, (str, bool, int))}).encode()]
    if path == "/guard":
        _guarded(environ, float(query.get("seconds", 0)), query["marker"], query.get("release"))
    if path == "/allocate":
        # Filled, not zeroed: untouched pages would not count as resident.
        _hoard.append(b"\x01" * (int(query["mb"]) << 20))
    if path == "/reactor-thread":
        # Work in the reactor's own thread pool, which the reactor waits
        # for as it shuts down.
        from twisted.internet import reactor

        reactor.callInThread(time.sleep, float(query["seconds"]))
    if path == "/sleep":
        print(f"sleeping in {os.getpid()}", flush=True)
        time.sleep(float(query["seconds"]))
    if path == "/crash":
        # When, on the clock /proc counts process start times by.
        print(f"crashing {os.getpid()} at {time.clock_gettime(time.CLOCK_BOOTTIME):.3f}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    start_response("200 OK", headers + [("X-Pid", str(os.getpid()))])
    return [str(os.getpid()).encode()]


class _Closing:
    """
    A streamed body whose close() leaves a marker file, so that a test can
    tell that the server called it.
    """

    def __init__(self, chunks, marker):
        self.chunks = iter(chunks)
        self.marker = marker

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.chunks)

    def close(self):
        with open(self.marker, "w") as f:
            f.write("closed")


def _forever(delay):
    while True:
        time.sleep(delay)
        yield b"x" * 1024


def _failing():
    yield b"first chunk\n"
    raise RuntimeError("failed mid-body")


def _readBody(environ):
    length = environ.get("CONTENT_LENGTH")
    return environ["wsgi.input"].read(int(length) if length else -1)


def protocol(environ, start_response):
    """
    Endpoints for the HTTP and WSGI protocol tests.
    """
    path = environ["PATH_INFO"]
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    text = [("Content-Type", "text/plain")]
    if path.startswith("/roundtrip") or environ["QUERY_STRING"] == "roundtrip":
        seen = {k: v for k, v in environ.items() if isinstance(v, str)}
        seen["body"] = _readBody(environ).decode("latin-1")
        seen["pid"] = os.getpid()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(seen).encode()]
    if path == "/sized":
        body = b"%d" % os.getpid()
        start_response("200 OK", text + [("Content-Length", str(len(body)))])
        return [body]
    if path == "/write":
        write = start_response("200 OK", text)
        write(b"written, ")
        write(b"then ")
        return [b"returned"]
    if path == "/file":
        start_response("200 OK", text + [("Content-Length", str(os.path.getsize(query["path"])))])
        return environ["wsgi.file_wrapper"](open(query["path"], "rb"))
    if path == "/raise":
        raise RuntimeError("failed before start_response")
    if path == "/raise-midway":
        start_response("200 OK", text)
        return _failing()
    if path == "/raise-midway-length":
        start_response("200 OK", text + [("Content-Length", "100")])
        return _failing()
    if path == "/short":
        start_response("200 OK", text + [("Content-Length", "10")])
        return [b"12345"]
    if path == "/header":
        kind = query["kind"]
        headers = {
            "crlf": [("X-Split", "a\r\nSet-Cookie: evil=1")],
            "lf": [("X-Split", "a\nSet-Cookie: evil=1")],
            "name": [("X Bad Name", "1")],
            "colon": [("X-Bad:", "1")],
        }.get(kind, [])
        status = "200 OK\r\nSet-Cookie: evil=1" if kind == "status" else "200 OK"
        start_response(status, text + headers)
        return [b"should never be sent"]
    if path == "/hop-by-hop":
        # Fields only the server may set (PEP 3333), given by the
        # application: ?field=NAME&value=VALUE, and a body of 5 bytes,
        # returned whole or (?stream) a piece at a time.
        start_response("200 OK", text + [(query["field"], query["value"])])
        return iter([b"he", b"llo"]) if "stream" in query else [b"hello"]
    if path == "/forever":
        start_response("200 OK", text)
        return _Closing(_forever(float(query.get("delay", "0.01"))), query["marker"])
    if path == "/closing":
        start_response("200 OK", text)
        return _Closing([b"a", b"b"], query["marker"])
    if path == "/closing-raise":
        start_response("200 OK", text)
        return _Closing(_failing(), query["marker"])
    return application(environ, start_response)


_checked = validator(protocol)


def validated(environ, start_response):
    """
    The protocol endpoints, checked by wsgiref's validator on every
    request; except /header, whose bad headers the validator would refuse
    before the server could.
    """
    if environ["PATH_INFO"] == "/header":
        return protocol(environ, start_response)
    return _checked(environ, start_response)


def _breaksPEP3333(environ, start_response):
    # No Content-Type: the validator refuses it.
    start_response("200 OK", [])
    return [b"x"]


#: An application the validator catches breaking PEP 3333.
brokenUnderValidator = validator(_breaksPEP3333)
