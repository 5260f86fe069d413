"""
Resources the unit tests serve.
"""

from __future__ import annotations

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request


class Held(Resource):
    """
    Answers at once, or (C{/held}) keeps the request until the test
    finishes it: a request in flight.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Request] = []

    def render(self, request: Request) -> bytes | int:
        if request.path == b"/held":
            self.held.append(request)
            return NOT_DONE_YET
        return b"hello"
