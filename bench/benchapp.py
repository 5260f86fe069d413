"""
The WSGI applications the benchmark serves, the same for every server.

Each answers with an C{X-Pid} header so that a run can tell which worker
served a request (the fairness measurement).
"""

import os
import time

HELLO = b"Hello, world!\n"
MEGABYTE = b"x" * (1024 * 1024)
TEXT = "text/plain"


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", TEXT), ("X-Pid", str(os.getpid()))])
    return [HELLO]


def io(environ, start_response):
    # Stands for a database call: the worker waits, the CPU does not.
    time.sleep(0.005)
    start_response("200 OK", [("Content-Type", TEXT), ("X-Pid", str(os.getpid()))])
    return [HELLO]


def big(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("X-Pid", str(os.getpid()))])
    return [MEGABYTE]


def upload(environ, start_response):
    stream = environ["wsgi.input"]
    received = 0
    while True:
        chunk = stream.read(65536)
        if not chunk:
            break
        received += len(chunk)
    start_response("200 OK", [("Content-Type", TEXT), ("X-Pid", str(os.getpid()))])
    return [b"%d\n" % received]
