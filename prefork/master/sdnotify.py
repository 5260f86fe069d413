"""
Telling systemd how the server is doing, through the datagram socket named by
C{NOTIFY_SOCKET} (sd_notify(3)): C{READY=1} once workers accept connections,
C{RELOADING=1} and C{STOPPING=1} as they happen, a C{STATUS=} line for
C{systemctl status}, and C{WATCHDOG=1} while the server is alive when the
unit sets C{WatchdogSec=}.

L{SystemdNotifier} is the protocol, in the standard library only;
L{NotifyingObserver} is the master's lifecycle put into its words;
L{SystemdWatchdog} keeps systemd's watchdog fed.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from prefork.master.interfaces import IGenerationState, ILifecycleObserver, IServerState
from prefork.master.workers import WorkerState

#: Workers beat once a second: one heard from within this many seconds is
#: alive, however short the watchdog's interval.
HEARTBEAT_GRACE = 3.0


class SystemdNotifier:
    """
    Sends state lines to the socket C{NOTIFY_SOCKET} names: a path, or an
    abstract name starting with C{@}.
    """

    _log = Logger()

    def __init__(self, address: str) -> None:
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def fromEnvironment(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier | None:
        """
        A notifier for C{NOTIFY_SOCKET}, or L{None} when it is not set.
        """
        address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
        return cls(address) if address.startswith(("/", "@")) else None

    def notify(self, **state: str | int) -> bool:
        """
        Send C{KEY=value} lines in one datagram, e.g. C{notify(READY=1)}.

        @return: Whether systemd's socket took it.  A server keeps serving
            when systemd cannot be told, so failure is logged, not raised.
        """
        message = "\n".join(f"{key}={value}" for key, value in state.items())
        try:
            self._socket.sendto(message.encode("utf-8"), self.address)
        except OSError as e:
            self._log.warn("Cannot notify systemd at {address}: {error}", address=self.address, error=e)
            return False
        return True

    def close(self) -> None:
        self._socket.close()


def monotonicMicroseconds() -> int:
    """
    C{CLOCK_MONOTONIC} in microseconds, as C{MONOTONIC_USEC=} wants it.
    """
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


@implementer(ILifecycleObserver)
class NotifyingObserver:
    """
    A lifecycle observer of the master that keeps systemd informed, so that
    C{Type=notify} and C{Type=notify-reload} services start, reload and stop
    when the server really does.

    @ivar startPid: The pid when the server was configured; if twistd has
        forked into the background since, systemd is told the new main pid.
    """

    def __init__(self, notifier: SystemdNotifier, startPid: int | None = None) -> None:
        self.notifier = notifier
        self.startPid = os.getpid() if startPid is None else startPid
        self._told = False

    def serving(self, generation: IGenerationState) -> None:
        state: dict[str, str | int] = {"READY": 1}
        if not self._told and os.getpid() != self.startPid:
            state["MAINPID"] = os.getpid()
        self._told = True
        count = generation.serving()
        state["STATUS"] = f"Serving with {count} worker{'s' if count != 1 else ''} (generation {generation.number})"
        self.notifier.notify(**state)

    def reloading(self) -> None:
        self.notifier.notify(
            RELOADING=1, MONOTONIC_USEC=monotonicMicroseconds(), STATUS="Reloading: starting a new generation"
        )

    def stopping(self) -> None:
        self.notifier.notify(STOPPING=1, STATUS="Stopping: finishing the requests in flight")


def watchdogInterval(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """
    The watchdog interval systemd asks for, in seconds, as
    sd_watchdog_enabled(3) reads it: C{WATCHDOG_USEC}, a positive number of
    microseconds, when C{WATCHDOG_PID} is this process (C{pid}) or unset;
    L{None} otherwise.
    """
    environ = os.environ if environ is None else environ
    pid = os.getpid() if pid is None else pid
    owner = environ.get("WATCHDOG_PID")
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
        if owner is not None and int(owner) != pid:
            return None
    except ValueError:
        return None
    return usec / 1e6 if usec > 0 else None


class SystemdWatchdog(Service):
    """
    Sends C{WATCHDOG=1} every half C{interval} while the server is alive:
    the master's reactor runs this, so a wedged master sends nothing, and it
    sends nothing either while no booted worker has been heard from for
    C{interval} (at least L{HEARTBEAT_GRACE}) seconds.  systemd then
    restarts the service as the unit's C{WatchdogSec=} and C{Restart=} say.

    systemd watches only a running service: not before C{READY=1}, nor once
    C{STOPPING=1} was sent, so it does not matter that nothing is sent while
    the first workers boot or after the stop has begun.
    """

    _log = Logger()

    def __init__(self, notifier: SystemdNotifier, state: IServerState, interval: float, clock: Any = None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.notifier = notifier
        self.state = state
        self.interval = interval
        self.clock = clock
        self._heard = False
        self._warned = False
        self._ping = LoopingCall(self.ping)
        self._ping.clock = clock

    def startService(self) -> None:
        super().startService()
        self._ping.start(self.interval / 2)

    def stopService(self) -> None:
        super().stopService()
        if self._ping.running:
            self._ping.stop()

    def lastHeartbeat(self) -> float | None:
        """
        When a booted worker was last heard from, in the clock's seconds.
        """
        heard = [
            record.lastHeard
            for generation in self.state.generations
            for record in generation.workersByAge()
            if record.state is not WorkerState.BOOTING
        ]
        return max(heard, default=None)

    def ping(self) -> None:
        last = self.lastHeartbeat()
        now = self.clock.seconds()
        if last is not None and now - last <= max(self.interval, HEARTBEAT_GRACE):
            self.notifier.notify(WATCHDOG=1)
            self._heard, self._warned = True, False
            return
        # Said once each time the workers fall silent, and not while the
        # first ones boot.
        if self._heard and not self._warned:
            self._warned = True
            why = "no worker serves" if last is None else f"no worker heard from for {now - last:.0f} s"
            self._log.warn("Not feeding systemd's watchdog: {why}", why=why)
