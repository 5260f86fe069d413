"""
Serving a WSGI application (PEP 3333) from a worker.

L{WorkerWSGIResource} is a L{twisted.web.wsgi.WSGIResource} that fixes what
the stock container gets wrong in a prefork server: C{wsgi.multiprocess} is
true, requests over UNIX sockets work (Twisted reads a port number from every
address, twisted issue 5406), C{CONTENT_TYPE} and C{CONTENT_LENGTH} are not
repeated as C{HTTP_} keys, and the iterable's C{close()} is always called.
It also mounts the application below C{--script-name}, believes
C{X-Forwarded-Proto} only from trusted proxies, offers C{wsgi.file_wrapper},
and never lets a response the application got wrong reach the client as if
it were right (L{prefork.web.exchange}).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.interfaces import IReactorThreads
from twisted.web.http import NOT_FOUND
from twisted.web.server import NOT_DONE_YET
from twisted.web.wsgi import WSGIResource

from prefork.web.environ import NotMounted, buildEnviron
from prefork.web.exchange import _InReactorExchange, _ThreadedExchange
from prefork.web.filewrapper import FileWrapper
from prefork.web.proxies import TrustedProxies
from prefork.web.request import WorkerRequest
from prefork.web.requesthooks import RequestHooks
from prefork.web.threadpool import RequestThreads

WSGIApplication = Callable[..., Iterable[bytes]]


class WorkerWSGIResource(WSGIResource):
    """
    A WSGI resource for a prefork worker.

    @param threadpool: Run the application in this pool; L{None} runs it in
        the reactor thread.
    @param extraEnviron: Keys added to every request's environ.
    @param requestHooks: Called around the application for each request.
    """

    def __init__(
        self,
        reactor: IReactorThreads,
        threadpool: RequestThreads | None,
        application: WSGIApplication,
        extraEnviron: dict[str, Any],
        scriptName: str = "",
        trustedProxies: TrustedProxies | None = None,
        displayTracebacks: bool = False,
        requestHooks: RequestHooks | None = None,
    ) -> None:
        # WSGIResource keeps these in private attributes and takes a
        # Twisted ThreadPool: ours are kept here.
        super().__init__(reactor, None, application)
        self.reactor = reactor
        self.threadpool = threadpool
        self.application = application
        self._requestHooks = requestHooks
        self._extraEnviron = dict(
            extraEnviron,
            **{
                "wsgi.multithread": threadpool is not None,
                "wsgi.file_wrapper": FileWrapper,
                "wsgi.input_terminated": True,
            },
        )
        self._scriptName = scriptName
        self._trusted = trustedProxies if trustedProxies is not None else TrustedProxies(["127.0.0.1"])
        self._displayTracebacks = displayTracebacks

    def render(self, request: WorkerRequest) -> object:
        try:
            environ = buildEnviron(request, self._extraEnviron, self._scriptName, self._trusted)
        except NotMounted:
            return _notFound(request)
        if self.threadpool is None:
            inReactor = _InReactorExchange(request, environ, self._displayTracebacks)
            inReactor.hooks = self._requestHooks
            inReactor.run(self.application)
        else:
            exchange = _ThreadedExchange(request, environ, self.reactor, self._displayTracebacks)
            exchange.hooks = self._requestHooks
            self.threadpool.callInThread(exchange.run, self.application)
        return NOT_DONE_YET


def _notFound(request: WorkerRequest) -> object:
    """
    Answer a request for a path outside the application's mount point.
    """
    body = b"Not Found\n"
    request.respond(NOT_FOUND, None, [(b"Content-Type", b"text/plain")], body, len(body))
    return NOT_DONE_YET
