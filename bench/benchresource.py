"""
The Twisted resource the benchmark serves with C{twist web --class} in one
process and with C{twistd prefork --resource} on every worker: the hello
application's answer, through Twisted's own C{Site}.
"""

from benchapp import HELLO, _headers
from twisted.web.resource import Resource


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request):
        for name, value in _headers(HELLO):
            request.setHeader(name, value)
        return HELLO


hello = Hello()
