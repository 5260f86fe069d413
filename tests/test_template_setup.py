"""
A template's setup travels on its command pipe, never on its command line.
"""

from __future__ import annotations

import os

import pytest

from prefork.config import ServerConfig
from prefork.messages import TemplateSetup

SETUP = TemplateSetup(
    3, 2, ServerConfig(app="myproject.wsgi:application", pythonPath=("/srv/café",), scriptName="/app")
)


def test_setup_is_one_ascii_line_and_survives_the_pipe() -> None:
    line = SETUP.encode()
    assert line.endswith(b"\n") and b"\n" not in line[:-1]
    line.decode("ascii")
    assert TemplateSetup.decode(line) == SETUP


def test_command_line_names_generation_and_app_only() -> None:
    assert SETUP.commandLine("/usr/bin/python3") == [
        "/usr/bin/python3", "-m", "prefork.child.template", "gen", "3", "app=myproject.wsgi:application",
    ]


def test_setup_is_read_up_to_its_line_and_no_further() -> None:
    readEnd, writeEnd = os.pipe()
    try:
        os.write(writeEnd, SETUP.encode() + b"spawn\nspawn-spare\n")
        assert TemplateSetup.read(readEnd) == SETUP
        # The commands that followed are the template's to read.
        assert os.read(readEnd, 100) == b"spawn\nspawn-spare\n"
    finally:
        os.close(readEnd)
        os.close(writeEnd)


@pytest.mark.parametrize(
    "sent",
    [b"", SETUP.encode()[:40], b"spawn\n", b"configure 1 1 {}\n", b"configure one 1 {}\n"],
)
def test_anything_else_is_not_a_setup(sent: bytes) -> None:
    readEnd, writeEnd = os.pipe()
    os.write(writeEnd, sent)
    os.close(writeEnd)
    try:
        with pytest.raises(ValueError):
            TemplateSetup.read(readEnd)
    finally:
        os.close(readEnd)
