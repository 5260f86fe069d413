"""
The probes the status endpoint answers, for load balancers, Kubernetes and
monitoring:

  - C{/healthz}: C{200} whenever the master answers at all.  The master
    serves it from the reactor that supervises the workers, so an answer
    means that loop turns; a wedged master does not answer.  It stays
    C{200} while the server stops: a liveness probe must not have a
    draining server killed.
  - C{/readyz}: C{200} while workers accept connections, C{503} before the
    first one is ready, from the moment a stop begins, and whenever no
    worker accepts.  The body says why, in one line.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.web.resource import Resource
from twisted.web.server import Request

from prefork.master.interfaces import IGenerationState, IServerState

_PLAIN = b"text/plain; charset=utf-8"


@dataclass(frozen=True)
class Readiness:
    """
    Whether the server should be sent requests, and why (or why not).
    """

    ready: bool
    reason: str

    def __str__(self) -> str:
        return f"{'ready' if self.ready else 'not ready'}: {self.reason}"


def readiness(state: IServerState) -> Readiness:
    """
    The readiness of the server C{state} shows.  During a reload the old
    generation counts until the new one has taken over: a HUP never makes
    the server unready.
    """
    if state.stopping:
        return Readiness(False, "stopping: finishing the requests in flight")
    generations: list[IGenerationState] = state.generations
    accepting = sum(g.serving() for g in generations if not g.stopping)
    if accepting:
        return Readiness(True, f"{accepting} worker{'s' if accepting != 1 else ''} accepting connections")
    if not any(g.everServed for g in generations):
        return Readiness(False, "starting: no worker is ready yet")
    return Readiness(False, "no worker accepts connections")


def _plain(request: Request, text: str) -> bytes:
    request.setHeader(b"content-type", _PLAIN)
    request.setHeader(b"cache-control", b"no-store")
    return text.encode("utf-8") + b"\n"


class HealthCheck(Resource):
    """
    C{/healthz}: the master's loop turns.
    """

    def render_GET(self, request: Request) -> bytes:
        return _plain(request, "ok")


class ReadinessCheck(Resource):
    """
    C{/readyz}: workers accept connections.
    """

    def __init__(self, state: IServerState) -> None:
        super().__init__()
        self.state = state

    def render_GET(self, request: Request) -> bytes:
        answer = readiness(self.state)
        if not answer.ready:
            request.setResponseCode(503)
        return _plain(request, str(answer))
