"""
The resource the raw-request corpus is sent to under C{--resource}: what
C{testapp:protocol} answers on the paths the corpus uses, from Twisted's
request, its facts named as the WSGI environ names them so that one corpus
file checks both.
"""

import json
import os
from urllib.parse import unquote_to_bytes

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET


def _seen(request):
    path, _, query = request.uri.partition(b"?")
    seen = {
        "REQUEST_METHOD": request.method.decode("latin-1"),
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query.decode("latin-1"),
        "SERVER_NAME": request.getRequestHostname().decode("latin-1"),
        "wsgi.url_scheme": "https" if request.isSecure() else "http",
    }
    for name, values in request.requestHeaders.getAllRawHeaders():
        if b"_" in name:
            # As the WSGI environ: X-Forwarded_Proto is no HTTP_X_FORWARDED_PROTO.
            continue
        key = name.decode("latin-1").upper().replace("-", "_")
        if key not in ("CONTENT_LENGTH", "CONTENT_TYPE"):
            key = "HTTP_" + key
        seen[key] = ",".join(v.decode("latin-1") for v in values)
    seen["body"] = request.content.read().decode("latin-1")
    seen["pid"] = os.getpid()
    return seen


class Protocol(Resource):
    isLeaf = True

    def render(self, request):
        if request.path.startswith(b"/roundtrip") or request.uri.endswith(b"?roundtrip"):
            # Written, not returned: of unknown length, as the WSGI
            # application's.
            request.setHeader(b"content-type", b"application/json")
            request.write(json.dumps(_seen(request)).encode())
            request.finish()
            return NOT_DONE_YET
        request.setHeader(b"content-type", b"text/plain")
        if request.path == b"/sized":
            return b"%d" % os.getpid()
        if request.path == b"/write":
            request.write(b"written, ")
            request.write(b"then ")
            request.write(b"returned")
            request.finish()
            return NOT_DONE_YET
        return b"%d" % os.getpid()


root = Protocol()
