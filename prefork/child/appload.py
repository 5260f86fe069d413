"""
Finding the WSGI application named on the command line.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prefork.importing import LoadError, importNamed

if TYPE_CHECKING:
    from prefork.web.wsgi import WSGIApplication


class AppLoadError(LoadError):
    """
    The application could not be loaded.  C{str()} of it is one line that
    names the problem; L{details} holds the traceback, when there is one.
    """


def parseAppSpec(spec: str) -> tuple[str, str]:
    """
    Split C{"package.module:object.attr"} into its module and attribute path.

    @raise ValueError: C{spec} is not of that form.
    """
    module, sep, attribute = spec.partition(":")
    names = [module, *attribute.split(".")]
    if not sep or not all(name.isidentifier() for part in names for name in part.split(".")):
        raise ValueError(f"{spec!r} is not of the form MODULE:NAME")
    return module, attribute


def loadApp(spec: str, pythonPath: Iterable[str] = ()) -> WSGIApplication:
    """
    Import the WSGI application named by C{spec}.

    @param pythonPath: Directories to search before C{sys.path}.
    @raise AppLoadError: It cannot be imported, lacks the attribute, or is not
        callable.
    """
    obj = importNamed("--app", spec, parseAppSpec, pythonPath, AppLoadError)
    if not callable(obj):
        raise AppLoadError(f"--app {spec!r} is not callable: it is {type(obj).__name__} {obj!r:.60}")
    application: WSGIApplication = obj
    return application


def _installationDirectories() -> tuple[str, ...]:
    """
    Where Python's standard library and installed packages live, and this
    server's own package: what is not the application's.
    """
    found = set()
    for scheme in sysconfig.get_scheme_names():
        for key in ("stdlib", "platstdlib", "purelib", "platlib"):
            try:
                for base, platbase in ((sys.prefix, sys.exec_prefix), (sys.base_prefix, sys.base_exec_prefix)):
                    found.add(sysconfig.get_path(key, scheme, vars={"base": base, "platbase": platbase}))
            except KeyError:
                pass
    found.update(site.getsitepackages() + [site.getusersitepackages()])
    found.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return tuple(os.path.join(os.path.realpath(d), "") for d in found if d)


def ownSources() -> list[str]:
    """
    The source files of the modules imported so far from outside the Python
    installation and this server: the application's own, which C{--reload}
    watches.
    """
    outside = _installationDirectories()
    found = set()
    for name, module in list(sys.modules.items()):
        if name.startswith("twisted."):
            # Twisted's plugins, this server's among them, may live beside
            # the application.
            continue
        path = getattr(module, "__file__", None)
        if not path or not path.endswith(".py") or "\n" in path:
            continue
        path = os.path.realpath(path)
        if not path.startswith(outside) and os.path.exists(path):
            found.add(path)
    return sorted(found)
