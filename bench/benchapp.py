"""
The WSGI applications the benchmark serves, the same for every server.

Each answers with an C{X-Pid} header so that a run can tell which worker
served a request (the fairness measurement).
"""

import os
import sys
import time

HELLO = b"Hello, world!\n"
MEGABYTE = b"x" * (1024 * 1024)
TEXT = "text/plain"


def _headers(body, contentType=TEXT):
    # With a length every server can keep the connection alive (uWSGI's
    # HTTP socket does not count a body for the application).
    return [("Content-Type", contentType), ("Content-Length", str(len(body))), ("X-Pid", str(os.getpid()))]


def hello(environ, start_response):
    start_response("200 OK", _headers(HELLO))
    return [HELLO]


def io(environ, start_response):
    # Stands for a database call: the worker waits, the CPU does not.
    time.sleep(0.005)
    start_response("200 OK", _headers(HELLO))
    return [HELLO]


def log(environ, start_response):
    # The hello app with one access-log line per request on stderr, as an
    # application that logs writes it: what logging costs the server.
    sys.stderr.write(f"{environ.get('REMOTE_ADDR', '-')} {environ['REQUEST_METHOD']} {environ['PATH_INFO']} 200\n")
    start_response("200 OK", _headers(HELLO))
    return [HELLO]


def big(environ, start_response):
    start_response("200 OK", _headers(MEGABYTE, "application/octet-stream"))
    return [MEGABYTE]


def upload(environ, start_response):
    stream = environ["wsgi.input"]
    received = 0
    while True:
        chunk = stream.read(65536)
        if not chunk:
            break
        received += len(chunk)
    body = b"%d\n" % received
    start_response("200 OK", _headers(body))
    return [body]


def stream(environ, start_response):
    # A large body made one MiB at a time (?mb=N, default 100), as a client
    # takes it: the server must not hold it all.
    megabytes = int(environ.get("QUERY_STRING", "").partition("mb=")[2] or 100)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(megabytes * len(MEGABYTE)))])
    return (MEGABYTE for _ in range(megabytes))
