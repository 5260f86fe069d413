"""
Running as another user: twistd's C{--uid} and C{--gid}.

twistd builds the service as the user that started it (root), calls
C{privilegedStartService}, then switches user and calls C{startService}.
The master opens every listening socket before the switch (a port below
1024 needs root), and its templates and workers, started after it, run as
the new user.  So does everything they read: the Python interpreter, the
standard library, the application.  A user that cannot run the interpreter
would only show as a template dying at start with a traceback; L{UserCheck}
finds it out before the switch, and stops the start with one line.

twistd's C{--umask} needs nothing here: twistd sets it before the master
starts anything, and every process inherits it (the access log is created
with it; a UNIX socket's mode is its endpoint's C{mode=} option).
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from twisted.application.service import Service


class CannotRunAs(Exception):
    """
    The user the server switches to cannot run it; the message says why.
    """


def switchedUser(twistdOptions: Mapping[str, Any] | None) -> tuple[int | None, int | None]:
    """
    The user and group twistd switches to, as it works them out (a user's
    primary group when only C{--uid} is given).
    """
    if twistdOptions is None:
        return None, None
    uid, gid = twistdOptions.get("uid"), twistdOptions.get("gid")
    if uid is not None and gid is None:
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            pass
    return uid, gid


def describeUser(uid: int | None, gid: int | None) -> str:
    """
    C{"user nobody (uid 65534)"}, or the group when only it changes.
    """
    try:
        if uid is not None:
            return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
        return f"group {grp.getgrgid(gid).gr_name} (gid {gid})"  # type: ignore[arg-type]
    except KeyError:
        return f"uid {uid}" if uid is not None else f"gid {gid}"


def checkUser(uid: int | None, gid: int | None, writable: tuple[str, ...] = ()) -> None:
    """
    Start the interpreter as C{uid} and C{gid}, with the supplementary groups
    twistd gives, from the current directory, and import the template's
    modules; open every file of C{writable} for appending.

    @raise CannotRunAs: Any of that fails.
    """
    who = describeUser(uid, gid)
    groups: list[int] | None = None
    if uid is not None:
        try:
            groups = os.getgrouplist(pwd.getpwuid(uid).pw_name, gid if gid is not None else os.getgid())
        except KeyError:
            groups = []
    probe = (
        # The child entered the directory before it switched user.
        "import os; os.chdir(os.getcwd())\n"
        "import prefork.child.template\n"
        + "".join(f"open({path!r}, 'a').close()\n" for path in writable)
    )
    try:
        child = subprocess.run(
            [sys.executable, "-c", probe],
            user=uid, group=gid, extra_groups=groups, cwd=os.getcwd(), capture_output=True, timeout=120,
        )
    except PermissionError as e:
        raise CannotRunAs(f"{who} cannot run the Python interpreter {sys.executable}: {e.strerror}") from None
    except OSError as e:
        raise CannotRunAs(f"{who} cannot start the server from {os.getcwd()}: {e.strerror}") from None
    except subprocess.TimeoutExpired:
        raise CannotRunAs(f"{who} cannot start the server: importing it took over 120 s") from None
    if child.returncode != 0:
        lines = child.stderr.decode("utf-8", "replace").strip().splitlines()
        why = lines[-1] if lines else child.returncode
        raise CannotRunAs(f"{who} cannot run the server with {sys.executable}: {why}")


class UserCheck(Service):
    """
    Checks, before twistd switches user, that the user can run the server.
    """

    def __init__(self, uid: int | None, gid: int | None, writable: tuple[str, ...] = ()) -> None:
        self.uid = uid
        self.gid = gid
        self.writable = writable

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        try:
            checkUser(self.uid, self.gid, self.writable)
        except CannotRunAs as e:
            raise SystemExit(f"twistd prefork: {e}") from e
