"""
The package's layers, checked from the source: the request path (web/)
imports nothing of the processes that run it (master/, child/), and a
worker's code (child/) nothing of the master's.  A module's size is not
checked: a module holds one responsibility, however long that takes.

Every import statement counts, wherever it is: at the top, in a function,
or under C{TYPE_CHECKING}.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

#: The folder that holds the package.
ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "prefork"

#: Each layer, and the packages it must not import from.
FENCES = {
    "prefork.web": ("prefork.master", "prefork.child"),
    "prefork.child": ("prefork.master",),
}


def moduleName(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: str = "prefork") -> list[Path]:
    return sorted(ROOT.joinpath(*package.split(".")).rglob("*.py"))


def imported(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """
    Each module the file at C{path} (under C{root}) imports, with its line:
    for C{from a import b}, both C{a} and C{a.b}, since C{b} may be a module.
    """
    name = moduleName(path, root)
    # The package a relative import starts from.
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            yield node.lineno, source
            for alias in node.names:
                yield node.lineno, f"{source}.{alias.name}"


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("layer", sorted(FENCES))
def test_layer_imports_nothing_beyond_its_fence(layer: str) -> None:
    crossings = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in modules(layer)
        for line, module in imported(path)
        if any(within(module, forbidden) for forbidden in FENCES[layer])
    ]
    assert not crossings, f"{layer} must not import from {', '.join(FENCES[layer])}:\n" + "\n".join(crossings)


def test_the_walk_sees_the_package() -> None:
    """
    The fences above look at real modules, or they prove nothing.
    """
    found = {module for _, module in imported(PACKAGE / "child" / "worker.py")}
    assert {"prefork.child.accept", "prefork.web.wsgi", "twisted.internet.task"} <= found
    assert len(modules("prefork.web")) > 5 and len(modules("prefork.child")) > 5


def test_every_form_of_import_is_found(tmp_path: Path) -> None:
    package = tmp_path / "prefork" / "web"
    package.mkdir(parents=True)
    sample = package / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from ..master import supervisor\n"
        "def late():\n"
        "    from . import site\n"
        "    import prefork.child.worker\n"
    )
    found = {module for _, module in imported(sample, tmp_path)}
    assert found == {
        "typing", "typing.TYPE_CHECKING", "prefork.master", "prefork.master.supervisor",
        "prefork.web", "prefork.web.site", "prefork.child.worker",
    }
