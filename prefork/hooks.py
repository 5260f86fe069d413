"""
Server hooks: the application's own code, called at moments of the server's
life, with gunicorn's names and arguments so that a C{gunicorn.conf.py}'s
hooks port as they are.

C{--hooks MODULE} (or C{MODULE:OBJECT}) names where to find them; any of
L{HOOKS} that it has is called, everything else in it is ignored.  Each
process of the server loads the module itself: the master as it starts,
each template as its generation starts (so a reload loads new hooks for the
template and its workers, not for the master).

The hooks see the server and the worker as small objects: L{IServer} and
L{IWorker}.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from prefork.config import ServerConfig
from prefork.importing import LoadError, importNamed

#: Every hook, with the process it runs in.
HOOKS = {
    "on_starting": "master",
    "when_ready": "master",
    "on_reload": "master",
    "on_exit": "master",
    "child_exit": "master",
    "pre_fork": "template",
    "post_fork": "worker",
    "post_worker_init": "worker",
    "worker_int": "worker",
    "worker_abort": "worker",
    "worker_exit": "worker",
    "pre_request": "worker",
    "post_request": "worker",
}

_log = Logger()


class IServer(Interface):
    """
    The server as the hooks see it: C{server} in C{on_starting(server)} and
    the other hooks that take it.
    """

    pid = Attribute("The master's process id.")
    generation = Attribute(
        "The generation number: in the master the newest (0 before the first starts), "
        "in a template or worker its own."
    )
    config = Attribute("The L{ServerConfig} every process of the server runs with.")
    workers = Attribute("How many workers each generation keeps (TTIN and TTOU change it in the master).")


class IWorker(Interface):
    """
    One worker as the hooks see it: C{worker} in C{post_fork(server,
    worker)} and the other hooks that take it.
    """

    pid = Attribute("The worker's process id; L{None} in C{pre_fork}, before it exists.")
    generation = Attribute("The number of the generation it belongs to.")
    config = Attribute("The L{ServerConfig} it runs with.")
    served = Attribute("How many requests it has admitted so far.")
    limit = Attribute("How many requests it serves before it retires (0: no limit; 0 until it has drawn its limit).")
    reason = Attribute(
        "Why it leaves: the value of a L{prefork.messages.ExitReason} (C{limit}, C{memory}, C{stop}, C{quick}, "
        "C{scaled down}, C{timeout}; C{orphaned} in C{worker_exit} alone), or in C{child_exit} how a worker that "
        "gave none died (C{was killed by SIGKILL}); C{''} while it serves.  In C{child_exit} a reason the master "
        "decided (C{scaled down}, C{timeout}) wins over what the worker said."
    )
    status = Attribute("Its wait status (see L{os.waitstatus_to_exitcode}) in C{child_exit}, else L{None}.")


@implementer(IServer)
@dataclass
class ServerInfo:
    pid: int
    generation: int
    config: ServerConfig
    workers: int


@implementer(IWorker)
@dataclass
class WorkerInfo:
    pid: int | None
    generation: int
    config: ServerConfig
    served: int = 0
    limit: int = 0
    reason: str = ""
    status: int | None = None


class HookLoadError(LoadError):
    """
    The hooks cannot be loaded; C{str()} of it is one line, L{details} the
    traceback, if the module raised.
    """


def parseHooksSpec(spec: str) -> tuple[str, str]:
    """
    Split C{"package.module"} or C{"package.module:object.attr"}.

    @raise ValueError: C{spec} is neither.
    """
    module, _, attribute = spec.partition(":")
    names = module.split(".") + (attribute.split(".") if attribute else [])
    if not all(name.isidentifier() for name in names) or spec.endswith(":"):
        raise ValueError(f"{spec!r} is not of the form MODULE or MODULE:NAME")
    return module, attribute


class Hooks:
    """
    The hooks one process calls.

    @ivar spec: Where they were loaded from; L{None} for no hooks.
    """

    def __init__(self, spec: str | None = None, found: dict[str, Callable[..., Any]] | None = None) -> None:
        self.spec = spec
        self._found = found or {}

    def __contains__(self, name: str) -> bool:
        return name in self._found

    def call(self, name: str, *args: Any) -> None:
        """
        Call hook C{name}, if there is one; what it raises goes to the caller.
        """
        hook = self._found.get(name)
        if hook is not None:
            hook(*args)

    def callLogged(self, name: str, *args: Any) -> None:
        """
        Call hook C{name}, if there is one, and log its traceback if it
        raises: for the hooks whose failure must not change what the
        server does.
        """
        try:
            self.call(name, *args)
        except BaseException:
            _log.failure("Hook {name} of {spec} raised", name=name, spec=self.spec)

    def bound(self, name: str, *first: Any) -> Callable[..., None] | None:
        """
        Hook C{name} with its first arguments given, or L{None} if there is
        no such hook: what the request path calls.
        """
        hook = self._found.get(name)
        if hook is None:
            return None
        return lambda *rest: hook(*first, *rest)


NO_HOOKS = Hooks()


def loadHooks(spec: str | None, pythonPath: Iterable[str] = ()) -> Hooks:
    """
    Import the hooks C{spec} names.

    @raise HookLoadError: The module cannot be imported, lacks the object,
        or names a hook that is not callable.
    """
    if spec is None:
        return NO_HOOKS
    holder = importNamed("--hooks", spec, parseHooksSpec, pythonPath, HookLoadError)
    found = {}
    for name in HOOKS:
        hook = getattr(holder, name, None)
        if hook is None:
            continue
        if not callable(hook):
            raise HookLoadError(f"--hooks {spec!r}: {name} is not callable: it is {type(hook).__name__} {hook!r:.60}")
        found[name] = hook
    return Hooks(spec, found)


def describeFailure(name: str) -> str:
    """
    One line for the exception being handled, raised by hook C{name}.
    """
    summary = traceback.format_exception_only(*sys.exc_info()[:2])[-1].strip()
    return f"hook {name} raised {summary}"
