"""
Tests for L{prefork.web.responsehead}: what start_response accepts, and
that remembering what was checked changes none of it.
"""

from __future__ import annotations

import pytest

from prefork.web import responsehead
from prefork.web.responsehead import checkedHeader, checkedStatus


def test_status() -> None:
    assert checkedStatus("200 OK") == b"200 OK"
    assert checkedStatus("200 OK") is checkedStatus("200 OK")
    assert checkedStatus("599 ") == b"599 "


@pytest.mark.parametrize("status", ["200", "20 OK", "200 OK\r\nX: y", "OK 200", b"200 OK", 200, None])
def test_bad_status(status: object) -> None:
    for _ in range(2):
        with pytest.raises(ValueError, match="WSGI status must be a str like '200 OK'"):
            checkedStatus(status)
    assert status not in responsehead._checkedStatuses


def test_header() -> None:
    first = checkedHeader(("Content-Length", "14"))
    assert first == ("content-length", b"Content-Length", b"14")
    assert checkedHeader(("Content-Length", "14")) is first
    assert checkedHeader(("X-Name", "caf\xe9")) == ("x-name", b"X-Name", b"caf\xe9")


@pytest.mark.parametrize(
    "header",
    [("Bad Name", "x"), ("X-Split", "a\r\nInjected: yes"), ("X-Nul", "a\0b"), ("Content-Length", "-1"),
     ("Content-Length", "1e3"), ("", "x")],
)
def test_bad_header(header: tuple[str, str]) -> None:
    for _ in range(2):
        with pytest.raises(ValueError, match="invalid WSGI header"):
            checkedHeader(header)
    assert header not in responsehead._checkedHeaders


@pytest.mark.parametrize("header", [["X-List", "x"], ("X-Bytes", b"x"), ("X-Three", "x", "y"), "X: y"])
def test_header_of_the_wrong_type(header: object) -> None:
    with pytest.raises(TypeError, match=r"must be a \(str, str\) tuple"):
        checkedHeader(header)


def test_what_is_remembered_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(responsehead, "_checkedHeaders", {})
    monkeypatch.setattr(responsehead, "_MAX_CHECKED", 3)
    for index in range(10):
        assert checkedHeader(("X-Id", str(index)))[2] == str(index).encode()
    assert len(responsehead._checkedHeaders) == 3
