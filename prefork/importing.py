"""
Importing the object an option names as C{MODULE:NAME} (C{--app},
C{--hooks}), with one line for each way that can fail.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable, Iterable
from typing import Any


class LoadError(Exception):
    """
    What an option names cannot be loaded.  C{str()} of it is one line that
    names the problem; L{details} holds the traceback, when there is one.
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


def importNamed(
    option: str,
    spec: str,
    parse: Callable[[str], tuple[str, str]],
    pythonPath: Iterable[str],
    error: type[LoadError],
) -> Any:
    """
    Import the module C{spec} names and get its (dotted) attribute, or the
    module itself when C{spec} names no attribute.

    @param option: The option that says C{spec}, for the messages.
    @param parse: Splits C{spec} into its module and attribute, or raises
        L{ValueError} to say what is wrong with it.
    @param pythonPath: Directories to search before C{sys.path}.
    @raise error: C{spec} is malformed, or its module cannot be imported,
        raised as it was, or lacks the attribute.
    """
    for directory in reversed(list(pythonPath)):
        if directory not in sys.path:
            sys.path.insert(0, directory)
    try:
        moduleName, attribute = parse(spec)
    except ValueError as e:
        raise error(f"{option} {e}") from None
    try:
        found: Any = importlib.import_module(moduleName)
    except ModuleNotFoundError as e:
        if e.name is not None and (moduleName + ".").startswith(e.name + "."):
            raise error(f"cannot import {option} {spec!r}: no module named {e.name!r}") from None
        raise _importFailure(option, spec, e, error) from None
    except BaseException as e:
        raise _importFailure(option, spec, e, error) from None
    for name in attribute.split(".") if attribute else ():
        try:
            found = getattr(found, name)
        except AttributeError:
            raise error(f"{option} {spec!r}: {moduleName!r} has no attribute {attribute!r}") from None
    return found


def _importFailure(option: str, spec: str, e: BaseException, error: type[LoadError]) -> LoadError:
    """
    Describe an exception raised by the named module itself as it was
    imported.
    """
    summary = traceback.format_exception_only(type(e), e)[-1].strip()
    return error(f"cannot import {option} {spec!r}: {summary}", traceback.format_exc())
