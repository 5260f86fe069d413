"""
Telling systemd how the server is doing, through the datagram socket named by
C{NOTIFY_SOCKET} (sd_notify(3)): C{READY=1} once workers accept connections,
C{RELOADING=1} and C{STOPPING=1} as they happen, and a C{STATUS=} line for
C{systemctl status}.

L{SystemdNotifier} is the protocol, in the standard library only;
L{NotifyingObserver} is the master's lifecycle put into its words.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from twisted.logger import Logger
from zope.interface import implementer

from prefork.master.interfaces import IGenerationState, ILifecycleObserver


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
        self.notifier.notify(RELOADING=1, MONOTONIC_USEC=monotonicMicroseconds(), STATUS="Reloading: starting a new generation")

    def stopping(self) -> None:
        self.notifier.notify(STOPPING=1, STATUS="Stopping: finishing the requests in flight")
