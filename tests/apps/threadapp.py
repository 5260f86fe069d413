"""
An application that starts a thread as it is imported: a fork would not
carry the thread, so the template must not preload it.
"""

import json
import os
import threading

_ticker = threading.Thread(target=threading.Event().wait, name="threadapp-ticker", daemon=True)
_ticker.start()
_importedIn = os.getpid()


def application(environ, start_response):
    body = json.dumps({"importedIn": _importedIn, "worker": os.getpid(), "tickerAlive": _ticker.is_alive()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
