"""
Finding what the workers serve: the WSGI application C{--app} names, or the
C{twisted.web} resource C{--resource} names.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
import traceback
from collections.abc import Iterable
from typing import TYPE_CHECKING

from twisted.web.resource import IResource

from prefork.importing import LoadError, importNamed

if TYPE_CHECKING:
    from prefork.config import ServerConfig
    from prefork.web.wsgi import WSGIApplication

    #: What a worker serves: a WSGI application, or a resource.
    Served = WSGIApplication | IResource


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


def loadResource(spec: str, pythonPath: Iterable[str] = ()) -> IResource:
    """
    Import the resource named by C{spec}: an object providing L{IResource},
    or a callable (a factory, a class, a Klein app's C{resource} method)
    that returns one, called once here.

    @param pythonPath: Directories to search before C{sys.path}.
    @raise AppLoadError: It cannot be imported, lacks the attribute, is
        neither, or raised when called.
    """
    obj = importNamed("--resource", spec, parseAppSpec, pythonPath, AppLoadError)
    if IResource.providedBy(obj):
        resource: IResource = obj
        return resource
    if not callable(obj):
        # A Klein app is the usual mistake: its resource is a method away.
        hint = " (for a Klein app, name its .resource)" if callable(getattr(obj, "resource", None)) else ""
        raise AppLoadError(
            f"--resource {spec!r} is neither a twisted.web resource nor a callable returning one: "
            f"it is {type(obj).__name__} {obj!r:.60}{hint}"
        )
    try:
        made = obj()
    except BaseException as e:
        summary = traceback.format_exception_only(type(e), e)[-1].strip()
        raise AppLoadError(f"--resource {spec!r} raised when called: {summary}", traceback.format_exc()) from None
    if not IResource.providedBy(made):
        raise AppLoadError(
            f"--resource {spec!r} returned {type(made).__name__} {made!r:.60}, not a twisted.web resource"
        )
    resource = made
    return resource


def loadServed(config: ServerConfig) -> Served:
    """
    Import what C{config} serves: its resource when it names one, else its
    application.

    @raise AppLoadError: It cannot be loaded.
    """
    if config.resource is not None:
        return loadResource(config.resource, config.pythonPath)
    return loadApp(config.app, config.pythonPath)


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
