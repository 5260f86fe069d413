"""
An application that floods its standard error: C{/spew?mb=N&writes=K}
writes N MiB without a newline in K writes, then a line that says it is
done, and answers once it has written it all.
"""

import os

CHUNK = 1024 * 1024


def _write(data):
    view = memoryview(data)
    while view:
        view = view[os.write(2, view):]


def application(environ, start_response):
    query = dict(pair.partition("=")[::2] for pair in environ["QUERY_STRING"].split("&") if pair)
    if environ["PATH_INFO"] != "/spew":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    size, writes = int(query.get("mb", "32")) * CHUNK, int(query.get("writes", "8"))
    for _ in range(writes):
        _write(b"e" * (size // writes))
    _write(b"\nspew done in %d\n" % os.getpid())
    body = b"wrote %d bytes\n" % size
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
