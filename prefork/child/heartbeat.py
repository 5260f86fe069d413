"""
A worker's heartbeat: what it tells the master of itself over the status
pipe, for supervision and for the status page.

A beat goes out once a second, and soon after the worker turns busy or idle.
Those changes happen up to twice per request, so they are throttled: the
first change after a quiet spell is written at once (an idle worker that
takes a slow request shows busy before the application even runs), later
ones at most every L{MIN_INTERVAL} seconds.  Under load that is a handful of
short writes a second, whatever the request rate.

A change held back by the throttle is sent by a small thread, not by the
reactor: with the application running in the reactor thread, a slow request
blocks the reactor, and the scoreboard must still show the worker busy.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from prefork.memory import MemoryUsage
from prefork.messages import STATUS_FD, Event, Message, WorkerReport, printablePath, send
from prefork.web.counting import RequestCounter

#: The shortest time between two beats sent for a change, in seconds.
MIN_INTERVAL = 0.1


class Heartbeat:
    """
    Sends the L{WorkerReport}s of the worker serving C{site}.

    @ivar memory: The worker's memory, as last measured (once a second: it
        costs a walk of the worker's page tables).
    """

    def __init__(self, pid: int, site: RequestCounter[Any], fd: int = STATUS_FD) -> None:
        self.pid = pid
        self.site = site
        self.fd = fd
        self.memory = MemoryUsage()
        self._lastChange = float("-inf")
        self._held = False
        self._stopped = False
        self._wake = threading.Event()
        self._sender: threading.Thread | None = None

    def report(self) -> WorkerReport:
        site = self.site
        return WorkerReport(
            served=site.served,
            inFlight=site.inFlight,
            rss=self.memory.rss,
            lastDuration=int(site.lastDuration * 1_000_000),
            lastPath=printablePath(site.lastPath),
            uss=self.memory.uss,
            pss=self.memory.pss,
            # A copy: the reactor thread goes on counting while the thread
            # that sends held changes encodes this one.
            refusals=dict(site.refusals),
        )

    def beat(self) -> bool:
        """
        Send a report now.  The regular beats call this; they do not count
        toward the throttle.

        @return: C{False} if the master is gone.
        """
        return send(Message(Event.BEAT, self.pid, self.report().toArgs()), self.fd)

    def changed(self) -> None:
        """
        The worker turned busy or idle: tell the master soon, without
        writing to the pipe for every request.
        """
        now = time.monotonic()
        if now - self._lastChange >= MIN_INTERVAL:
            self._lastChange = now
            self.beat()
        elif not self._held:
            self._held = True
            if self._sender is None:
                self._sender = threading.Thread(target=self._sendHeld, name="prefork-heartbeat", daemon=True)
                self._sender.start()
            self._wake.set()

    def _sendHeld(self) -> None:
        # Runs in its own thread: sleeps until the throttle lets the held
        # change go, then sends the state as it is by then.
        while True:
            self._wake.wait()
            self._wake.clear()
            time.sleep(max(0.0, self._lastChange + MIN_INTERVAL - time.monotonic()))
            if self._stopped:
                return
            self._held = False
            self._lastChange = time.monotonic()
            self.beat()

    def stop(self) -> None:
        """
        Send the last report, with the final count of requests, and end
        the thread that sends held changes.
        """
        self._stopped = True
        self._wake.set()
        self.beat()
