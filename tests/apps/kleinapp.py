"""
A Klein application the tests serve with C{--resource kleinapp:app.resource}.
"""

import os

from klein import Klein
from twisted.internet import reactor
from twisted.internet.task import deferLater

import prefork

app = Klein()
#: Which process imported this module: the template's when preloaded.
IMPORTED_BY = os.getpid()


def _reactor():
    # Taken at import time, in the template: it stands for the reactor the
    # worker installs after the fork.
    return reactor


@app.route("/imported")
def imported(request):
    return f"imported by {IMPORTED_BY}, served by {os.getpid()}"


@app.route("/hello/<name>")
def hello(request, name):
    return f"hello {name} from {os.getpid()}"


@app.route("/form", methods=["POST"])
def form(request):
    return b"got " + request.args[b"word"][0]


@app.route("/later")
def later(request):
    return deferLater(_reactor(), 0.05, lambda: b"later")


@app.route("/wait")
async def wait(request):
    milliseconds = int(request.args.get(b"ms", [b"200"])[0])
    await deferLater(_reactor(), milliseconds / 1000)
    return f"waited {os.getpid()}"


@app.route("/fail")
def fail(request):
    raise ZeroDivisionError("kleinapp fails on purpose")


@app.route("/guarded")
def guarded(request):
    """
    Work the worker must not exit before: it writes its marker file
    C{seconds} later, under the exit guard.
    """
    marker = request.args[b"marker"][0].decode()
    seconds = float(request.args[b"seconds"][0])

    def done():
        with open(marker, "w") as f:
            f.write(str(os.getpid()))

    prefork.exitGuard().add(deferLater(_reactor(), seconds, done))
    return b"guarded"
