"""
bench/ serves every server the same work: the comparison of one response
with the reference (bench/equalwork.py), and the Perl applications that
answer field for field as the WSGI ones.  No server is started here.
"""

from __future__ import annotations

import importlib.util
import io
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str) -> ModuleType:
    # bench/ is a folder of scripts, not a package: load its modules by path.
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


equalwork = _load("equalwork")
benchapp = _load("benchapp")
Response = equalwork.Response
HELLO = (("Content-Type", "text/plain"), ("Content-Length", "14"))


def test_sameWork() -> None:
    """
    Fields that are per process or per connection (Date, Server, X-Pid,
    Connection, Keep-Alive) and the case of names make no difference.
    """
    reference = Response(200, (*HELLO, ("X-Pid", "12"), ("Connection", "keep-alive")), b"Hello, world!\n")
    other = Response(200, (("date", "Mon"), ("server", "gunicorn"), ("content-type", "text/plain"),
                           ("content-length", "14"), ("x-pid", "99"), ("Keep-Alive", "timeout=5")),
                     b"Hello, world!\n")
    assert equalwork.differences(reference, other) == []


def test_noContentLength() -> None:
    reference = Response(200, HELLO, b"Hello, world!\n")
    other = Response(200, (("Content-Type", "text/plain"),), b"Hello, world!\n")
    assert equalwork.differences(reference, other) == ["no Content-Length"]


def test_contentLengthValue() -> None:
    reference = Response(200, HELLO, b"Hello, world!\n")
    other = Response(200, (("Content-Type", "text/plain"), ("Content-Length", "15")), b"Hello, world!\n")
    assert equalwork.differences(reference, other) == ["Content-Length 15, not 14"]


def test_extraField() -> None:
    """
    A field the reference does not send, chunked framing for one, is work.
    """
    reference = Response(200, HELLO, b"Hello, world!\n")
    other = Response(200, (*HELLO, ("Transfer-Encoding", "chunked")), b"Hello, world!\n")
    assert equalwork.differences(reference, other) == ["extra header transfer-encoding"]


def test_duplicateField() -> None:
    reference = Response(200, HELLO, b"Hello, world!\n")
    other = Response(200, (*HELLO, ("Content-Type", "text/plain")), b"Hello, world!\n")
    assert equalwork.differences(reference, other) == ["extra header content-type"]


def test_statusAndBody() -> None:
    reference = Response(200, HELLO, b"Hello, world!\n")
    assert equalwork.differences(reference, Response(500, HELLO, b"Hello, world!\n")) == ["status 500, not 200"]
    assert equalwork.differences(reference, Response(200, HELLO, b"Hello, World!\n")) == [
        "body differs (same length, 14 bytes)"]
    assert equalwork.differences(reference, Response(200, HELLO, b"")) == ["body of 0 bytes, not 14"]


#: Runs benchapp.psgi's application (APP=name) once, as a PSGI server would,
#: and prints its status, header fields and body.
PSGI_CALL = r"""
package Input;
sub new { my ($class, $data) = @_; bless {data => $data}, $class }
sub read { my $self = shift; my $chunk = substr($self->{data}, 0, $_[1], ""); $_[0] = $chunk; length $chunk }
package main;
my $app = do $ARGV[0] or die($@ || $!);
my $r = $app->({REQUEST_METHOD => $ARGV[1], PATH_INFO => "/", REMOTE_ADDR => "127.0.0.1",
                "psgi.input" => Input->new("x" x $ARGV[2])});
binmode STDOUT;
print "$r->[0]\n";
my @fields = @{$r->[1]};
while (my ($name, $value) = splice(@fields, 0, 2)) { print "$name: $value\n" }
print "\n", join("", @{$r->[2]});
"""


def _psgi(app: str, method: str, size: int) -> Any:
    output = subprocess.run(["perl", "-e", PSGI_CALL, str(BENCH / "benchapp.psgi"), method, str(size)],
                            env={"APP": app, "PATH": "/usr/bin:/bin"}, capture_output=True, check=True).stdout
    head, _, body = output.partition(b"\n\n")
    status, *lines = head.decode().split("\n")
    return Response(int(status), tuple(tuple(line.split(": ", 1)) for line in lines), body)


def _wsgi(app: str, method: str, size: int) -> Any:
    started: list[Any] = []
    environ = {"REQUEST_METHOD": method, "PATH_INFO": "/", "REMOTE_ADDR": "127.0.0.1", "QUERY_STRING": "",
               "wsgi.input": io.BytesIO(b"x" * size)}
    body = b"".join(getattr(benchapp, app)(environ, lambda status, headers: started.append((status, headers))))
    status, headers = started[0]
    return Response(int(status.split()[0]), tuple(headers), body)


@pytest.mark.skipif(shutil.which("perl") is None, reason="needs perl")
@pytest.mark.parametrize(("app", "method", "size"),
                         [("hello", "GET", 0), ("io", "GET", 0), ("log", "GET", 0), ("big", "GET", 0),
                          ("upload", "POST", 1024 * 1024)])
def test_perlAppsAnswerAsWsgiApps(app: str, method: str, size: int, capsys: pytest.CaptureFixture[str]) -> None:
    """
    benchapp.psgi's applications answer as benchapp.py's: same status,
    same header fields, Content-Length wherever the WSGI app sends one,
    same body.
    """
    wsgi = _wsgi(app, method, size)
    assert wsgi.contentLength() is not None
    assert equalwork.differences(wsgi, _psgi(app, method, size)) == []


targets = _load("targets")


class _Row:
    def __init__(self, server: str, close: bool, requests: float, differs: str = "", app: str = "hello") -> None:
        self.server, self.close, self.requests, self.differs, self.app = server, close, requests, differs, app
        self.missing, self.uss = "", 1.0


def test_noRatioForDifferentWork() -> None:
    """
    A server whose answer differed from the reference's gets no ratio in
    the goal lines: what differed is printed instead.
    """
    rows = [_Row("prefork-t0-m0", close, 1000.0) for close in (False, True)]
    rows += [_Row("twiggy-prefork-m0", close, 500.0, differs="no Content-Length") for close in (False, True)]
    lines = targets.ratioLines(rows)
    assert "close_vs_twiggy=different work (goal 1): twiggy-prefork-m0: no Content-Length" in lines
    assert "keepalive_vs_twiggy=different work (goal 2): twiggy-prefork-m0: no Content-Length" in lines
    rows[2:] = [_Row("twiggy-prefork-m0", close, 500.0) for close in (False, True)]
    assert "close_vs_twiggy=2.00 (goal 1)" in targets.ratioLines(rows)


def test_crowdPeerDifferentWork() -> None:
    crowds = [targets.Crowd("prefork-t0-m0", 2000.0, 0, 0.5, 0),
              targets.Crowd("gunicorn-gthread", 1000.0, 0, 0.5, 0, differs="extra header x")]
    lines = targets.crowdLines(crowds, {"prefork-t0-m0": "t0"}, "gunicorn-gthread")
    assert "c2000_t0_timeouts=0 (goal 0)" in lines
    assert "c2000_t0_max_latency_s=0.50 (goal 1)" in lines
    assert not any(line.startswith("c2000_t0_vs_gthread=2") for line in lines)
    crowds[1] = targets.Crowd("gunicorn-gthread", 1000.0, 0, 0.5, 0)
    assert "c2000_t0_vs_gthread=2.00 (goal 1)" in targets.crowdLines(crowds, {"prefork-t0-m0": "t0"},
                                                                       "gunicorn-gthread")


def test_logKeeps() -> None:
    rows = [_Row("prefork-t0-m0", close, 1000.0) for close in (False, True)]
    rows += [_Row("prefork-t0-m0", close, 900.0, app="log") for close in (False, True)]
    assert targets.logLines(rows, "prefork-t0-m0", [4.0, 6.0]) == [
        "log_keeps=0.90 (goal 0.85)", "log_keeps_close=0.90 (goal 0.85)", "log_master_us_per_line=5.00 (goal 5)"]
