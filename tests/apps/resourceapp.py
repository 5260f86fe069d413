"""
A plain C{twisted.web} resource tree the tests serve with C{--resource}.
"""

import json
import os
import threading

from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.static import File

#: Which process imported this module: the template's when preloaded.
IMPORTED_BY = os.getpid()
NOT_A_RESOURCE = 42


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request):
        return f"plain hello, imported by {IMPORTED_BY}, served by {os.getpid()}".encode()


class Stream(Resource):
    """
    C{?chunks=N} lines, one every 20 ms, written as they are made; it stops
    when the client goes away.
    """

    isLeaf = True

    def render_GET(self, request):
        from twisted.internet import reactor

        chunks = int(request.args.get(b"chunks", [b"100"])[0])
        state = {"sent": 0, "call": None}

        def lost(failure):
            if state["call"] is not None and state["call"].active():
                state["call"].cancel()

        request.notifyFinish().addErrback(lost)

        def tick():
            request.write(b"chunk %d\n" % state["sent"])
            state["sent"] += 1
            if state["sent"] == chunks:
                request.finish()
            else:
                state["call"] = reactor.callLater(0.02, tick)

        tick()
        return NOT_DONE_YET


class Client(Resource):
    """
    The client as Twisted's request knows it, as JSON.
    """

    isLeaf = True

    def render_GET(self, request):
        address = request.getClientAddress()
        return json.dumps({"host": getattr(address, "host", None), "secure": request.isSecure()}).encode()


class Wait(Resource):
    """
    Answers C{?ms=N} milliseconds later; the worker is busy with it meanwhile.
    """

    isLeaf = True

    def render_GET(self, request):
        from twisted.internet import reactor

        def answer():
            request.write(b"waited")
            request.finish()

        call = reactor.callLater(int(request.args[b"ms"][0]) / 1000, answer)
        request.notifyFinish().addErrback(lambda failure: call.cancel())
        return NOT_DONE_YET


class Threaded(Resource):
    """
    Answers with the name of the thread C{deferToThread} ran its work in,
    and whether it was the reactor's.
    """

    isLeaf = True

    def render_GET(self, request):
        def work():
            thread = threading.current_thread()
            return f"{thread.name} {thread is threading.main_thread()}".encode()

        def answer(text):
            request.write(text)
            request.finish()

        deferToThread(work).addCallback(answer)
        return NOT_DONE_YET


def makeRoot():
    root = Resource()
    root.putChild(b"hello", Hello())
    root.putChild(b"stream", Stream())
    root.putChild(b"client", Client())
    root.putChild(b"wait", Wait())
    root.putChild(b"thread", Threaded())
    # This folder, as static files (Range requests, directory listing).
    root.putChild(b"files", File(os.path.dirname(os.path.abspath(__file__))))
    return root


root = makeRoot()
