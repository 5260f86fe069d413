"""
The documentation: README.rst stays a guide, every page renders without a
docutils warning, and what the pages name (options, defaults, access log
fields, metrics, linked files) exists in the code.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest

from prefork.options import BY_NAME, OPTIONS
from prefork.tap import Options
from prefork.web.accesslog import FIELDS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.rst"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.rst"))]

#: README.rst is also the PyPI long description: a guide, not a reference.
MAX_README_LINES = 400

_BORDER = re.compile(r"^=+(?: +=+)+$")
_OPTION = re.compile(r"--[a-z][a-z0-9-]*")
_TRACKING = re.compile(r"\bissues?\s*#?\s*\d+|\bgoals?\b", re.IGNORECASE)
_LINK = re.compile(r"`[^`<]*<([^>]+)>`__?")


def _docutils():
    """
    docutils, or a skip that says why; with C{PREFORK_TESTS_REQUIRE_ALL=1} a
    missing docutils fails instead.
    """
    try:
        import docutils.core
    except ImportError:
        if os.environ.get("PREFORK_TESTS_REQUIRE_ALL") == "1":
            pytest.fail("docutils is missing (the test extra installs it)")
        pytest.skip("docutils is missing: the test extra installs it")
    return docutils.core


def _tables(text: str, firstHeader: str) -> list[list[list[str]]]:
    """
    The rows of every simple table in C{text} whose first column is headed
    C{firstHeader}: each row a list of cells, continuation lines joined.
    """
    lines = text.splitlines()
    tables = []
    i = 0
    while i < len(lines):
        if not (_BORDER.match(lines[i]) and i + 2 < len(lines) and _BORDER.match(lines[i + 2])):
            i += 1
            continue
        columns = [m.span() for m in re.finditer(r"=+", lines[i])]
        header = lines[i + 1][: columns[0][1]].strip()
        end = next(j for j in range(i + 3, len(lines)) if _BORDER.match(lines[j]))
        if header == firstHeader:
            rows: list[list[str]] = []
            for line in lines[i + 3 : end]:
                if not line.strip():
                    continue
                cells = [line[start : (columns[k + 1][0] if k + 1 < len(columns) else None)].strip()
                         for k, (start, _) in enumerate(columns)]
                if cells[0] or not rows:
                    rows.append(cells)
                else:
                    rows[-1] = [" ".join(filter(None, pair)) for pair in zip(rows[-1], cells, strict=True)]
            tables.append(rows)
        i = end + 1
    return tables


def _optionRows() -> list[list[str]]:
    tables = _tables(README.read_text(encoding="utf-8"), "option")
    assert len(tables) >= 2, "README.rst lost its option tables"
    return [row for table in tables for row in table]


def test_readmeIsShort() -> None:
    """
    README.rst is a guide of at most L{MAX_README_LINES} lines; the
    reference lives in docs/.
    """
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_README_LINES, f"README.rst has {lines} lines; move reference material to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_noTrackingWords(page: Path) -> None:
    """
    User documentation names no issue numbers and no goals.
    """
    found = _TRACKING.findall(page.read_text(encoding="utf-8"))
    assert not found, f"{page.name} uses internal tracking words: {found}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_rendersWithoutWarnings(page: Path) -> None:
    """
    Each page parses as reStructuredText without a single docutils warning
    (PyPI refuses a long description that does not render).
    """
    core = _docutils()
    from docutils.utils import SystemMessage

    warnings = io.StringIO()
    try:
        core.publish_doctree(
            page.read_text(encoding="utf-8"),
            source_path=str(page),
            settings_overrides={"halt_level": 2, "report_level": 2, "warning_stream": warnings},
        )
    except SystemMessage as e:
        pytest.fail(f"{page.name}: {e}")
    assert warnings.getvalue() == ""


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_linksAndImagesExist(page: Path) -> None:
    """
    Every relative link and image of a page names a file of the tree.
    """
    text = page.read_text(encoding="utf-8")
    targets = _LINK.findall(text) + re.findall(r"^\s*\.\. image:: (\S+)", text, re.MULTILINE)
    missing = [t for t in targets if "://" not in t and not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_optionsExist() -> None:
    """
    Every C{--option} README.rst's option tables name is one that
    C{twistd prefork --help} lists.
    """
    usage = str(Options())
    named = {option for row in _optionRows() for cell in row for option in _OPTION.findall(cell)}
    assert named, "no options found in README.rst's tables"
    unknown = sorted(option for option in named if not re.search(re.escape(option) + r"\b(?!-)", usage))
    assert not unknown, f"README.rst names options twistd prefork does not have: {unknown}"


def test_readmeDocumentsEveryOption() -> None:
    """
    README.rst's option tables have one row for each declared option
    (L{prefork.options.OPTIONS}), written C{``--name METAVAR``} with the
    declared default, and name its Twiggy::Prefork aliases.
    """
    rows = {}
    for row in _optionRows():
        match = re.match(r"``--([a-z][a-z0-9-]*)( [^`]+)?``", row[0])
        assert match, f"README.rst's option row {row[0]!r} does not start with ``--option``"
        assert match.group(1) not in rows, f"--{match.group(1)} has two rows in README.rst"
        rows[match.group(1)] = (match.group(2) or "").strip(), row
    missing = sorted(set(BY_NAME) - set(rows))
    unknown = sorted(set(rows) - set(BY_NAME))
    assert not missing and not unknown, f"README.rst lacks {missing}; names undeclared {unknown}"
    for name, (metavar, row) in rows.items():
        option = BY_NAME[name]
        assert metavar == option.metavar, f"README.rst writes --{name} {metavar}, declared --{name} {option.metavar}"
        assert row[1] == option.documentedDefault, (
            f"--{name} defaults to {option.documentedDefault!r}, README.rst says {row[1]!r}"
        )
        for alias in option.aliases:
            assert f"``--{alias}``" in row[2], f"README.rst's --{name} row does not name its alias --{alias}"


def test_configurationNamesDeclaredOptions() -> None:
    """
    docs/configuration.rst's gunicorn table names only declared options,
    with their defaults; the page names exactly the declared aliases, and
    both guides name only the environment variables options declare.
    """
    text = (DOCS / "configuration.rst").read_text(encoding="utf-8")
    (table,) = _tables(text, "gunicorn")[1:]
    spellings = {f"--{name}" for option in OPTIONS for name in (option.name, *option.aliases)}
    checked = 0
    for row in table:
        if row[1].startswith("twistd's"):
            continue
        named = _OPTION.findall(row[1])
        unknown = [option for option in named if option not in spellings]
        assert not unknown, f"docs/configuration.rst maps {row[0]} to undeclared {unknown}"
        same = re.search(r"the same default, ([^)]+)\)", row[1])
        if same:
            assert same.group(1) == BY_NAME[named[0][2:]].documentedDefault, row
        checked += len(named)
    assert checked >= 20
    aliases = re.search(r"Twiggy::Prefork's names \(([^)]*)\)", text)
    assert aliases, "docs/configuration.rst no longer names Twiggy::Prefork's aliases"
    assert set(re.findall(r"``([a-z-]+)``", aliases.group(1))) == {a for o in OPTIONS for a in o.aliases}
    variables = {option.variable for option in OPTIONS} | {v for option in OPTIONS for v in option.environment}
    for page in (README, DOCS / "configuration.rst"):
        named = set(re.findall(r"\b(PREFORK_[A-Z_]*[A-Z]|WEB_CONCURRENCY)\b", page.read_text(encoding="utf-8")))
        assert named <= variables, f"{page.name} names undeclared variables {sorted(named - variables)}"


def test_accessLogFields() -> None:
    """
    docs/observability.rst lists exactly the fields an access log format
    may use.
    """
    (table,) = _tables((DOCS / "observability.rst").read_text(encoding="utf-8"), "field")
    documented = {row[0].strip("`") for row in table}
    assert documented == set(FIELDS)


def test_metricNames() -> None:
    """
    docs/observability.rst names exactly the metrics /metrics serves.
    """
    source = (ROOT / "prefork" / "status" / "metrics.py").read_text(encoding="utf-8")
    served = set(re.findall(r"\"(prefork_[a-z_]+)\"", source))
    documented = set(re.findall(r"``(prefork_[a-z_]+)``", (DOCS / "observability.rst").read_text(encoding="utf-8")))
    assert served, "no metric names found in prefork/status/metrics.py"
    assert documented == served, f"only documented: {documented - served}; only served: {served - documented}"
