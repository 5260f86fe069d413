"""
The WSGI application the superdaemon tests serve: it tells its version, its
pid, the variables superdaemons set that reached it, and where the request
came from.
"""

import json
import os
import time

VERSION = "1"

#: Variables that must not reach the application.
WATCHED = (
    "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "SERVER_STARTER_PORT", "NOTIFY_SOCKET", "WATCHDOG_USEC",
    "WATCHDOG_PID",
)

# A test holds the import back with SUPERAPP_GATE: the import says it has
# begun by creating GATE.importing, then waits until GATE exists.
if os.environ.get("SUPERAPP_GATE"):
    gate = os.environ["SUPERAPP_GATE"]
    open(gate + ".importing", "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)


def application(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        marker, seconds = environ["QUERY_STRING"].split(",")
        open(marker, "w").close()
        time.sleep(float(seconds))
    leaked = {k: v for k, v in os.environ.items() if k in WATCHED or k.startswith("EINHORN_")}
    request = {k: environ.get(k) for k in ("REMOTE_ADDR", "SERVER_PORT", "SERVER_NAME", "HTTP_X_FORWARDED_FOR")}
    body = json.dumps({"version": VERSION, "pid": os.getpid(), "leaked": leaked, "request": request})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]
