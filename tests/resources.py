"""
Resources the unit tests serve.
"""

from __future__ import annotations

from prefork.web.request import WorkerRequest


class Held:
    """
    Answers at once, or (C{/held}) keeps the request until the test
    finishes it: a request in flight.
    """

    isLeaf = True

    def __init__(self) -> None:
        self.held: list[WorkerRequest] = []

    def render(self, request: WorkerRequest) -> None:
        if request.path == b"/held":
            self.held.append(request)
            return
        request.respond(200, None, [(b"Content-Type", b"text/plain")], b"hello", 5)
