"""
The C{twistd prefork} plugin: a preforking WSGI HTTP server.
"""

from twisted.application.service import ServiceMaker

prefork = ServiceMaker(
    "twisted-prefork",
    "prefork.tap",
    "A preforking WSGI HTTP server with per-worker request limits.",
    "prefork",
)
