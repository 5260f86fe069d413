"""
An application that speaks as it is imported, and tells which process image
it runs in: whether the master's code is in it (a template forked from the
master) or not (a template started as a new Python).
"""

import json
import os
import sys
import warnings

print("startupapp: imported", flush=True)
warnings.warn("startupapp: a warning at import", stacklevel=1)


def application(environ, start_response):
    body = json.dumps({"masterCode": "prefork.master.supervisor" in sys.modules, "template": os.getppid()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
