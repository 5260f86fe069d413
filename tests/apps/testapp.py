"""
The WSGI application the tests serve.
"""

import json
import os
import signal
import threading
import time
from urllib.parse import parse_qs

NOT_CALLABLE = 42
#: What /allocate keeps alive, so that the worker's memory stays used.
_hoard = []


def _guarded(environ, seconds, marker):
    guard = environ["prefork.exit_guard"]
    guard.begin()

    def work():
        try:
            time.sleep(seconds)
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
    if path == "/environ":
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({k: v for k, v in environ.items() if isinstance(v, (str, bool, int))}).encode()]
    if path == "/guard":
        _guarded(environ, float(query["seconds"]), query["marker"])
    if path == "/allocate":
        # Filled, not zeroed: untouched pages would not count as resident.
        _hoard.append(b"\x01" * (int(query["mb"]) << 20))
    if path == "/sleep":
        print(f"sleeping in {os.getpid()}", flush=True)
        time.sleep(float(query["seconds"]))
    if path == "/crash":
        os.kill(os.getpid(), signal.SIGKILL)
    start_response("200 OK", headers + [("X-Pid", str(os.getpid()))])
    return [str(os.getpid()).encode()]
