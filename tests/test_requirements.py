"""
The requirements of tests/tools.py: a test that needs what a machine may
lack declares it, so that C{PREFORK_TESTS_REQUIRE_ALL=1} fails it instead of
letting it skip unseen.
"""

from __future__ import annotations

import os
import socket

import pytest

import test_accept
import test_privileges
import tools


def declared(marks: object) -> set[str]:
    return {name for mark in marks if mark.name == "requires" for name in mark.args}  # type: ignore[attr-defined]


def test_root_is_a_requirement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert tools.REQUIREMENTS["root"].problem() == "the tests run as uid 1000, not as root"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert tools.REQUIREMENTS["root"].problem() is None


def test_ipv6_is_a_requirement(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoIPv6(socket.socket):
        def bind(self, address: object) -> None:
            raise OSError(99, "Cannot assign requested address")

    monkeypatch.setattr(socket, "socket", NoIPv6)
    assert tools.REQUIREMENTS["ipv6"].problem() == (
        "this machine has no IPv6 loopback (cannot listen on ::1: [Errno 99] Cannot assign requested address)"
    )


def test_the_privilege_tests_require_root() -> None:
    assert declared([test_privileges.pytestmark]) == {"root"}


def test_the_ipv6_accept_tests_require_ipv6() -> None:
    byFamily = {param.values[0]: declared(param.marks) for param in test_accept.FAMILIES}
    assert byFamily == {socket.AF_INET: set(), socket.AF_INET6: {"ipv6"}, socket.AF_UNIX: set()}
