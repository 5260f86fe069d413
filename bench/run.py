#!/usr/bin/env python3
"""
Benchmark twisted-prefork against its peers on this machine, and print the
results as Markdown.

Each server in turn is started on a free loopback port with the same
application and worker count, is waited for until it answers 200, gets a
short wrk run with keep-alive and one with C{Connection: close}, and is
stopped by its pid.  Every number is from the same run, so the ratios to
gunicorn hold even when the machine is busy with other work; the load from
other processes during each run is printed beside it.

    python3 bench/run.py                     # everything, a few minutes
    python3 bench/run.py --apps hello --servers gunicorn-sync,prefork-t0-m0
    python3 bench/run.py --quick --twiggy-lib ~/Twiggy-Prefork/lib   # the targets only

A server that is not installed (Perl's Twiggy::Prefork needs plackup and the
path of its lib/, C{--twiggy-lib} or C{TWIGGY_PREFORK_LIB}) is shown as
missing, with what to install, rather than left out.

Equal work: before a server is timed, one of its responses to each app is
compared with twisted-prefork's (C{equalwork.py}); a server that answers
differently is shown as "different work: ..." and gets no ratio anywhere.

The peers are installed on first use: gunicorn, pyuwsgi, waitress and granian
(and this project) from PyPI into a virtualenv (C{--venv}), Starman, Twiggy's
Perl modules, HTTP::Parser::XS and wrk with apt-get.  This script itself
needs only the standard library.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import equalwork
import forkcost
import targets

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
APPS = ("hello", "io", "log", "big", "upload")
#: The Python peers: the tool each puts in the virtualenv's bin/, by package.
PEERS = {"gunicorn": "gunicorn", "pyuwsgi": "uwsgi", "waitress": "waitress-serve", "granian": "granian"}
#: Debian packages, by the program (or Perl module) that shows each is there.
DEBIAN = {"wrk": "wrk", "starman": "starman", "plackup": "libplack-perl"}
#: Plack parses with it wherever it is installed (unless PLACK_HTTP_PARSER_PP=1),
#: as Starman and Twiggy do in production: the Perl rows must use it.
PERL_XS_PARSER = "libhttp-parser-xs-perl"
#: What Twiggy::Prefork needs from Debian; its own lib/ is passed by path.
TWIGGY_DEBIAN = f"libanyevent-perl libev-perl libparallel-prefork-perl libplack-perl twiggy {PERL_XS_PARSER}"
#: The shared object of HTTP::Parser::XS, as it appears in /proc/PID/maps.
XS_PARSER_OBJECT = "/auto/HTTP/Parser/XS/XS.so"
#: The rows that the quick mode measures.
QUICK = ("twiggy-prefork-m0", "twiggy-prefork-m100", "uwsgi", "gunicorn-gthread",
         "prefork-t0-m0", "prefork-t0-m100", "prefork-t4-m0")
STARTUP_TIMEOUT = 30.0
#: Goal 6: this many keep-alive connections, wrk's timeout, and the run's
#: length per second of --duration (8 s at the quick mode's 5).
CROWD = 2000
CROWD_TIMEOUT = "5s"
CROWD_SECONDS_PER_DURATION = 1.6


def crowdServers(threads: int) -> tuple[str, ...]:
    return ("prefork-t0-m0", f"prefork-t{threads}-m0", "gunicorn-gthread")


TICKS = os.sysconf("SC_CLK_TCK")


# Processes, from /proc.


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(p) for p in task.read_text().split()]
        except OSError:
            pass
    return found


def tree(pid: int) -> list[int]:
    """
    C{pid} and every process below it.
    """
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo += children(current)
    return pids


def memory(pid: int) -> tuple[float, float]:
    """
    The resident and the unique (private) memory of C{pid}, in MiB.
    """
    values = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                values[name] = int(rest.split()[0])
    except OSError:
        return 0.0, 0.0
    unique = values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)
    return values.get("Rss", 0) / 1024, unique / 1024


def cpuSeconds(pids: list[int]) -> float:
    """
    The CPU time used by C{pids} and by the children they have reaped.
    """
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])
    return total / TICKS


def machineBusySeconds() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / TICKS


# Installing the peers.


def hasXsParser() -> bool:
    return subprocess.run(["perl", "-MHTTP::Parser::XS", "-e", "1"], capture_output=True).returncode == 0


def ensureTools(venv: Path, install: bool) -> None:
    missing = [package for tool, package in DEBIAN.items() if shutil.which(tool) is None]
    missing += TWIGGY_DEBIAN.split() if shutil.which("plackup") is None else []
    missing += [] if hasXsParser() else [PERL_XS_PARSER]
    if missing:
        if not install or os.geteuid() != 0:
            if shutil.which("wrk") is None:
                sys.exit("bench: missing wrk: apt-get install wrk")
        else:
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", *sorted(set(missing))], check=True,
                           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    # Otherwise the servers that are missing are shown as missing.
    peers = [package for package, tool in PEERS.items() if not (venv / "bin" / tool).exists()]
    ours = (venv / "bin" / "twistd").exists() and list(venv.glob("lib/*/site-packages/setproctitle"))
    if peers or not ours:
        if not install:
            if not ours:
                sys.exit(f"bench: no virtualenv with twisted-prefork at {venv}")
            return
        if not (venv / "bin" / "pip").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "-q"]
        if peers:
            subprocess.run([*pip, *peers], check=True)
        if not ours:
            # Editable, so that a run measures the working tree as it is now;
            # with titles, as installed for production (and the first template
            # is forked only where titles can be set).
            subprocess.run([*pip, "-e", f"{ROOT}[proctitle]", "--config-settings", "editable_mode=compat"],
                           check=True)


def raiseFileLimit() -> None:
    """
    As many descriptors as allowed, for wrk's 2,000 connections and the
    servers (they inherit the limit).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


# The servers.


@dataclass(frozen=True)
class ServerKind:
    """
    How to start one server with one of the applications.
    """

    name: str
    command: Callable[[Path, str, int, int], list[str]]
    env: Callable[[str], dict[str, str]] = lambda app: {}
    #: Whether it recycles workers, and so can show a respawn cost.
    recycles: bool = False
    #: What to install to run it, or the empty string when it is installed.
    missing: Callable[[Path], str] = lambda venv: ""
    #: A shared object its workers must have mapped to run as deployed.
    loads: str = ""


def prefork(threads: int | str, maxRequests: int) -> Callable[[Path, str, int, int], list[str]]:
    def command(venv: Path, app: str, port: int, workers: int) -> list[str]:
        return [
            str(venv / "bin" / "twistd"), "-n", "--pidfile=", "prefork",
            "--listen", f"tcp:{port}:interface=127.0.0.1", "--app", f"benchapp:{app}",
            "--workers", str(workers), "--threads", str(threads), "--max-requests", str(maxRequests),
        ]

    return command


def gunicorn(*extra: str) -> Callable[[Path, str, int, int], list[str]]:
    def command(venv: Path, app: str, port: int, workers: int) -> list[str]:
        return [str(venv / "bin" / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", str(workers),
                "--preload", *extra, f"benchapp:{app}"]

    return command


def uwsgi(venv: Path, app: str, port: int, workers: int) -> list[str]:
    # --http11-socket: --http-socket with HTTP/1.1 keep-alive.
    return [str(venv / "bin" / "uwsgi"), "--http11-socket", f"127.0.0.1:{port}", "--master",
            "--processes", str(workers), "--module", f"benchapp:{app}", "--disable-logging",
            "--die-on-term", "--need-app"]


def twiggyPrefork(lib: str, maxRequests: int) -> Callable[[Path, str, int, int], list[str]]:
    def command(venv: Path, app: str, port: int, workers: int) -> list[str]:
        return ["plackup", f"-I{lib}", "-s", "Twiggy::Prefork", "--max-workers", str(workers),
                "--max-reqs-per-child", str(maxRequests), "-E", "production",
                "--listen", f"127.0.0.1:{port}", str(BENCH / "benchapp.psgi")]

    return command


def twiggyMissing(lib: str) -> Callable[[Path], str]:
    def missing(venv: Path) -> str:
        if shutil.which("plackup") is None or not hasXsParser():
            return f"apt-get install {TWIGGY_DEBIAN}"
        if not lib or not Path(lib, "Twiggy", "Prefork.pm").is_file():
            return ("an export of Twiggy::Prefork's lib/ (github.com/kazeburo/Twiggy-Prefork), "
                    "passed as --twiggy-lib PATH or TWIGGY_PREFORK_LIB")
        return ""

    return missing


def inVenv(tool: str, package: str) -> Callable[[Path], str]:
    def missing(venv: Path) -> str:
        return "" if (venv / "bin" / tool).exists() else f"pip install {package} into {venv}"

    return missing


def onPath(tool: str, package: str) -> Callable[[Path], str]:
    return lambda venv: "" if shutil.which(tool) else f"apt-get install {package}"


def starman(*extra: str) -> Callable[[Path, str, int, int], list[str]]:
    def command(venv: Path, app: str, port: int, workers: int) -> list[str]:
        return ["starman", "--listen", f"127.0.0.1:{port}", "--workers", str(workers), "-E", "deployment",
                "--preload-app", *extra, str(BENCH / "benchapp.psgi")]

    return command


def granian(venv: Path, app: str, port: int, workers: int) -> list[str]:
    # HTTP/1 only and no websockets, as the others; one blocking thread per
    # worker runs the WSGI app, as --threads 0 and the sync workers do; the
    # backlog of twisted-prefork and gunicorn; only warnings logged.
    return [str(venv / "bin" / "granian"), "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--http", "1", "--no-ws", "--blocking-threads", "1",
            "--backlog", "2048", "--log-level", "warning", f"benchapp:{app}"]


def waitress(venv: Path, app: str, port: int, workers: int) -> list[str]:
    return [str(venv / "bin" / "waitress-serve"), f"--listen=127.0.0.1:{port}", f"benchapp:{app}"]


def twistWeb(venv: Path, app: str, port: int, workers: int) -> list[str]:
    # One process, whatever the worker count: what --resource gains over.
    return [str(venv / "bin" / "twist"), "web", "--class", f"benchresource.{app.capitalize()}",
            "--listen", f"tcp:{port}:interface=127.0.0.1", "--logfile", "/dev/null"]


def preforkResource(venv: Path, app: str, port: int, workers: int) -> list[str]:
    # An access log, as twist web writes one.
    return [
        str(venv / "bin" / "twistd"), "-n", "--pidfile=", "prefork",
        "--listen", f"tcp:{port}:interface=127.0.0.1", "--resource", f"benchresource:{app}",
        "--workers", str(workers), "--max-requests", "0", "--access-log", "/dev/null",
    ]


#: The hello resource served by Twisted's own Site: in one process, and on
#: every worker.  The first is the reference of their equal work.
RESOURCE_KINDS = (ServerKind("twist-web", twistWeb), ServerKind("prefork-resource", preforkResource))


def serverKinds(threads: int, twiggyLib: str = "") -> dict[str, ServerKind]:
    gunicornMissing = inVenv("gunicorn", "gunicorn")
    perlApp: Callable[[str], dict[str, str]] = lambda app: {"APP": app}  # noqa: E731
    kinds = [
        ServerKind("gunicorn-sync", gunicorn(), missing=gunicornMissing),
        ServerKind("gunicorn-gthread", gunicorn("-k", "gthread", "--threads", str(threads)), missing=gunicornMissing),
        ServerKind("gunicorn-sync-m100", gunicorn("--max-requests", "100"), recycles=True, missing=gunicornMissing),
        ServerKind("uwsgi", uwsgi, missing=inVenv("uwsgi", "pyuwsgi")),
        # The Perl servers pick their application by the APP variable.
        ServerKind("granian", granian, missing=inVenv("granian", "granian")),
        # Plack picks HTTP::Parser::XS wherever it is installed: the Perl rows
        # must have it loaded (checked in each worker's /proc/PID/maps).
        ServerKind("starman", starman("--max-requests", "1000000"), env=perlApp, missing=onPath("starman", "starman"),
                   loads=XS_PARSER_OBJECT),
        ServerKind("starman-m100", starman("--max-requests", "100"), env=perlApp, recycles=True,
                   missing=onPath("starman", "starman"), loads=XS_PARSER_OBJECT),
        ServerKind("twiggy-prefork-m0", twiggyPrefork(twiggyLib, 0), env=perlApp, missing=twiggyMissing(twiggyLib),
                   loads=XS_PARSER_OBJECT),
        # 100 is Twiggy::Prefork's own default.
        ServerKind("twiggy-prefork-m100", twiggyPrefork(twiggyLib, 100), env=perlApp, recycles=True,
                   missing=twiggyMissing(twiggyLib), loads=XS_PARSER_OBJECT),
        ServerKind("waitress", waitress, missing=inVenv("waitress-serve", "waitress")),
        ServerKind("prefork-t0-m0", prefork(0, 0)),
        ServerKind("prefork-t0-m100", prefork(0, 100), recycles=True),
        ServerKind(f"prefork-t{threads}-m0", prefork(threads, 0)),
        ServerKind(f"prefork-t{threads}-m100", prefork(threads, 100), recycles=True),
    ]
    return {kind.name: kind for kind in kinds}


def freePort() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers200(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            # Twiggy answers HTTP/1.0 whatever was asked.
            return re.match(rb"HTTP/1\.[01] 200 ", s.recv(64)) is not None
    except OSError:
        return False


@dataclass
class Running:
    """
    One started server.
    """

    kind: ServerKind
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    startup: float = 0.0

    @classmethod
    def start(cls, kind: ServerKind, venv: Path, app: str, workers: int, logs: Path) -> Running:
        port = freePort()
        log = logs / f"{kind.name}-{app}.log"
        env = dict(os.environ, PYTHONPATH=str(BENCH), **kind.env(app))
        # Plack's switch to its pure-Perl parser: never inherited from the caller.
        env.pop("PLACK_HTTP_PARSER_PP", None)
        began = time.monotonic()
        with log.open("wb") as output:
            process = subprocess.Popen(kind.command(venv, app, port, workers), cwd=BENCH, env=env,
                                       stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        running = cls(kind, process, port, log)
        while not answers200(port):
            if process.poll() is not None or time.monotonic() - began > STARTUP_TIMEOUT:
                running.stop()
                sys.exit(f"bench: {kind.name} did not serve {app}:\n{log.read_text()[-2000:]}")
            time.sleep(0.002)
        running.startup = time.monotonic() - began
        return running

    def memory(self) -> tuple[float, float, float]:
        """
        The master's RSS, and the mean USS and RSS of its workers (the
        processes with no children; the master itself when it is alone), MiB.
        """
        measured = [memory(pid) for pid in self.workers()]
        return (memory(self.process.pid)[0], statistics.mean(m[1] for m in measured),
                statistics.mean(m[0] for m in measured))

    def workers(self) -> list[int]:
        pids = tree(self.process.pid)
        return [pid for pid in pids[1:] if not children(pid)] or pids[:1]

    def lacks(self, sharedObject: str) -> list[int]:
        """
        The workers that do not have C{sharedObject} mapped.
        """
        lacking = []
        for pid in self.workers():
            try:
                if sharedObject not in Path(f"/proc/{pid}/maps").read_text():
                    lacking.append(pid)
            except OSError:
                pass
        return lacking

    def stop(self) -> None:
        """
        TERM the server by its pid, KILL it after 15 s, and KILL any of its
        processes still left.
        """
        pids = tree(self.process.pid)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for pid in pids[1:]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# Equal work.


#: The server whose answers are the reference.
REFERENCE = "prefork-t0-m0"
#: What upload.lua sends.
UPLOAD = b"x" * (1024 * 1024)


def ask(port: int, app: str) -> equalwork.Response:
    """
    One request to C{app} as wrk makes it, and the response.
    """
    return equalwork.fetch(port, "POST", UPLOAD) if app == "upload" else equalwork.fetch(port)


class Work:
    """
    Whether a server does the same work as the reference: the same answer
    to each app (status, header field names, Content-Length, body), and,
    for the Perl servers, the parser they run with as deployed.
    """

    def __init__(self, reference: ServerKind, venv: Path, logs: Path) -> None:
        self.reference, self.venv, self.logs = reference, venv, logs
        self.answers: dict[str, equalwork.Response] = {}

    def expected(self, app: str) -> equalwork.Response:
        if app not in self.answers:
            running = Running.start(self.reference, self.venv, app, 1, self.logs)
            try:
                self.answers[app] = ask(running.port, app)
            finally:
                running.stop()
        return self.answers[app]

    def check(self, running: Running, app: str) -> str:
        """
        How C{running} differs from the reference, or the empty string.
        """
        try:
            found = equalwork.differences(self.expected(app), ask(running.port, app))
        except (OSError, http.client.HTTPException) as e:
            found = [f"no answer ({e})"]
        if running.kind.loads and running.lacks(running.kind.loads):
            found.append(f"does not load {running.kind.loads}")
        if found:
            progress(f"{running.kind.name:20} {app:7} different work: {'; '.join(found)}")
        return "; ".join(found)


# wrk.


@dataclass
class Load:
    """
    One wrk run's results.
    """

    requests: float = 0.0
    p50: float = 0.0
    p99: float = 0.0
    errors: int = 0
    #: CPU used by other processes on the machine meanwhile, in cores.
    others: float = 0.0
    #: Requests served per second of the server's own CPU time: steadier
    #: than requests/s when other work shares the machine.
    perCpu: float = 0.0
    pids: dict[str, int] = field(default_factory=dict)
    #: Requests completed, the longest latency (ms), and the requests wrk
    #: gave up on after its --timeout.
    total: int = 0
    maxLatency: float = 0.0
    timeouts: int = 0
    #: CPU seconds of the server's first process alone (the master).
    masterCpu: float = 0.0


def milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def ownCpu(pid: int) -> float:
    """
    The CPU seconds C{pid} itself used (not its children).
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def wrk(running: Running, app: str, close: bool, duration: float, connections: int, script: str | None = None,
        threads: int = 1, timeout: str = "10s") -> Load:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
               "--timeout", timeout]
    if close:
        command += ["-H", "Connection: close"]
    script = script or ("upload.lua" if app == "upload" else None)
    if script:
        command += ["-s", str(BENCH / script)]
    command.append(f"http://127.0.0.1:{running.port}/")
    serverPids = tree(running.process.pid)
    busy, serverCpu, wrkCpu = machineBusySeconds(), cpuSeconds(serverPids), _childCpu()
    masterCpu = ownCpu(running.process.pid)
    began = time.monotonic()
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    elapsed = time.monotonic() - began
    masterCpu = ownCpu(running.process.pid) - masterCpu
    serverPids = tree(running.process.pid)
    serverCpu = cpuSeconds(serverPids) - serverCpu
    others = (machineBusySeconds() - busy) - serverCpu - (_childCpu() - wrkCpu)
    load = Load(others=max(0.0, others / elapsed), masterCpu=masterCpu)
    total = re.search(r"(\d+) requests in", output)
    if total:
        load.total = int(total.group(1))
        if serverCpu > 0:
            load.perCpu = load.total / serverCpu
    latency = re.search(r"^[ \t]+Latency[ \t]+\S+[ \t]+\S+[ \t]+(\S+)", output, re.M)
    if latency:
        load.maxLatency = milliseconds(latency.group(1))
    load.requests = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    load.p50 = milliseconds(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    load.p99 = milliseconds(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    socketErrors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socketErrors:
        load.errors += sum(int(x) for x in socketErrors.groups())
        load.timeouts = int(socketErrors.group(4))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        load.errors += int(non2xx.group(1))
    load.pids = {pid: int(n) for pid, n in re.findall(r"^pid (\S+) (\d+)$", output, re.M)}
    return load


def _childCpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# Measurements.


@dataclass
class Row:
    server: str
    app: str
    close: bool
    load: Load
    startup: float
    memory: tuple[float, float, float]
    #: What to install, for a server that could not be run.
    missing: str = ""
    #: How its answer differs from the reference's; such a row gets no ratio.
    differs: str = ""

    @property
    def requests(self) -> float:
        return self.load.requests

    @property
    def uss(self) -> float:
        return self.memory[1]


def measure(kinds: list[ServerKind], apps: list[str], options: argparse.Namespace, logs: Path,
            work: Work) -> Iterator[Row]:
    for app in apps:
        for kind in kinds:
            if kind.recycles and app != "hello":
                continue  # recycling is measured on the hello app only
            needs = kind.missing(options.venv)
            if needs:
                progress(f"{kind.name:20} {app:7} missing: {needs}")
                for close in (False, True):
                    yield Row(kind.name, app, close, Load(), 0.0, (0.0, 0.0, 0.0), missing=needs)
                continue
            running = Running.start(kind, options.venv, app, options.workers, logs)
            try:
                differs = work.check(running, app)
                wrk(running, app, False, 1, options.connections)  # warm up
                for close in (False, True):
                    load = wrk(running, app, close, options.duration, options.connections)
                    yield Row(kind.name, app, close, load, running.startup, running.memory(), differs=differs)
                    progress(f"{kind.name:20} {app:7} {'close' if close else 'keep-alive':10} "
                             f"{load.requests:9.0f} req/s  p99 {load.p99:7.2f} ms  others {load.others:.2f} cores")
            finally:
                running.stop()


def resourceRows(options: argparse.Namespace, logs: Path) -> list[Row]:
    """
    The hello resource in one process and on the workers, keep-alive and
    close, C{options.rounds} times: what every core gains a Twisted
    application.
    """
    kinds = list(RESOURCE_KINDS)
    work = Work(kinds[0], options.venv, logs)
    return [row for _ in range(options.rounds) for row in measure(kinds, ["hello"], options, logs, work)]


def fairness(kinds: list[ServerKind], options: argparse.Namespace, logs: Path) -> Iterator[tuple[str, bool, Load]]:
    """
    How the requests of a hello run spread over the workers.
    """
    for kind in kinds:
        running = Running.start(kind, options.venv, "hello", options.workers, logs)
        try:
            for close in (False, True):
                load = wrk(running, "hello", close, options.duration, options.connections, script="pids.lua")
                progress(f"fairness {kind.name:20} {'close' if close else 'keep-alive':10} {load.pids}")
                yield kind.name, close, load
        finally:
            running.stop()


def respawnCost(kind: ServerKind, options: argparse.Namespace, logs: Path, requests: int = 1000) -> tuple[float, float]:
    """
    With one worker retiring every 100 requests, the median latency of a
    sequential request, and how much longer the requests that had to wait for
    a fresh worker took, on average, in ms.
    """
    running = Running.start(kind, options.venv, "hello", 1, logs)
    latencies = []
    try:
        for _ in range(requests):
            began = time.monotonic()
            if not answers200(running.port):
                raise RuntimeError(f"{kind.name} failed a request")
            latencies.append((time.monotonic() - began) * 1000)
    finally:
        running.stop()
    median = statistics.median(latencies)
    waits = sorted(latencies)[-(requests // 100):]
    return median, statistics.mean(waits) - median


def startupTimes(kind: ServerKind, options: argparse.Namespace, logs: Path, starts: int = 7) -> list[float]:
    """
    Milliseconds from exec to the first 200 of the hello app, over several
    starts: one start is at the mercy of whatever else the machine does.
    """
    times = []
    for _ in range(starts):
        running = Running.start(kind, options.venv, "hello", options.workers, logs)
        running.stop()
        times.append(running.startup * 1000)
    return times


def best(rows: Iterator[Row]) -> list[Row]:
    """
    The fastest of each server's rounds for each app and connection mode:
    other work on the machine only ever slows a run down.
    """
    fastest: dict[tuple[str, str, bool], Row] = {}
    for row in rows:
        key = (row.server, row.app, row.close)
        if key not in fastest or row.load.requests > fastest[key].load.requests:
            fastest[key] = row
    return list(fastest.values())


def peakMemory(pids: list[int]) -> dict[int, int]:
    """
    The peak resident memory (VmHWM) of each of C{pids}, in bytes.
    """
    peaks = {}
    for pid in pids:
        try:
            found = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
        except OSError:
            continue
        if found:
            peaks[pid] = int(found.group(1)) * 1024
    return peaks


def transfer(port: int, request: bytes, body: int) -> float:
    """
    Send C{request} and C{body} bytes after it, read the whole response;
    return the seconds it took.
    """
    piece = memoryview(bytearray(1024 * 1024))
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(request)
        for _ in range(body // len(piece)):
            s.sendall(piece)
        while s.recv_into(piece):
            pass
    return time.monotonic() - began


def largeBodies(
    kind: ServerKind, options: argparse.Namespace, logs: Path, megabytes: int = 100
) -> tuple[float, float, float]:
    """
    MB/s for a C{megabytes} response and for an upload of that size, and how
    much the worker's peak memory grew meanwhile, in MiB.
    """
    running = Running.start(kind, options.venv, "stream", 1, logs)
    uploading = Running.start(kind, options.venv, "upload", 1, logs)
    try:
        workers = tree(running.process.pid)[1:] + tree(uploading.process.pid)[1:]
        before = peakMemory(workers)
        size = megabytes * 1024 * 1024
        down = transfer(running.port, f"GET /?mb={megabytes} HTTP/1.1\r\nHost: bench\r\n"
                        "Connection: close\r\n\r\n".encode(), 0)
        up = transfer(uploading.port, f"POST / HTTP/1.1\r\nHost: bench\r\nContent-Length: {size}\r\n"
                      "Connection: close\r\n\r\n".encode(), size)
        after = peakMemory(workers)
        growth = max(after[pid] - before.get(pid, after[pid]) for pid in after) / 2**20
    finally:
        running.stop()
        uploading.stop()
    return size / 1e6 / down, size / 1e6 / up, growth


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# The report.


def machine() -> str:
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    model = cpu.group(1) if cpu else platform.machine()
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def table(rows: list[Row]) -> list[str]:
    # A row that did different work is no one's baseline and has no ratio.
    baseline = {(r.app, r.close, r.server): r.load.requests for r in rows if not r.missing and not r.differs}
    lines = [
        (
            "| server | app | connection | req/s | x sync | x gthread | req per CPU-s | p50 ms | p99 ms | errors "
            "| master RSS MiB | worker USS MiB | worker RSS MiB | startup ms | others' CPU (cores) |"
        ),
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if r.missing:
            lines.append(f"| {r.server} | {r.app} | {'close' if r.close else 'keep-alive'} "
                         f"| missing: {r.missing} |" + " |" * 11)
            continue
        ratios = []
        for peer in ("gunicorn-sync", "gunicorn-gthread"):
            base = baseline.get((r.app, r.close, peer))
            ratios.append(f"{r.load.requests / base:.2f}" if base and not r.differs else "")
        if r.differs:
            ratios[0] = f"different work: {r.differs}"
        lines.append(
            f"| {r.server} | {r.app} | {'close' if r.close else 'keep-alive'} | {r.load.requests:,.0f} "
            f"| {ratios[0]} | {ratios[1]} | {r.load.perCpu:,.0f} | {r.load.p50:.2f} | {r.load.p99:.2f} "
            f"| {r.load.errors} | {r.memory[0]:.1f} | {r.memory[1]:.1f} | {r.memory[2]:.1f} "
            f"| {r.startup * 1000:.0f} | {r.load.others:.2f} |"
        )
    return lines


def fairnessTable(results: list[tuple[str, bool, Load]]) -> list[str]:
    lines = ["| server | connection | requests per worker (share) | p99 ms |", "| --- | --- | --- | ---: |"]
    for name, close, load in results:
        total = sum(load.pids.values()) or 1
        shares = ", ".join(f"{n:,} ({n / total:.0%})" for n in sorted(load.pids.values(), reverse=True))
        lines.append(f"| {name} | {'close' if close else 'keep-alive'} | {shares} | {load.p99:.2f} |")
    return lines


def crowded(kinds: list[ServerKind], options: argparse.Namespace, logs: Path, work: Work) -> list[targets.Crowd]:
    """
    Each of C{kinds} under C{CROWD} keep-alive connections (wrk -t2, a
    request over C{CROWD_TIMEOUT} counted as a timeout), hello app.
    """
    seconds = max(1, round(options.duration * CROWD_SECONDS_PER_DURATION))
    found = []
    for kind in kinds:
        needs = kind.missing(options.venv)
        if needs:
            progress(f"{kind.name:20} c{CROWD}    missing: {needs}")
            continue
        running = Running.start(kind, options.venv, "hello", options.workers, logs)
        try:
            differs = work.check(running, "hello")
            wrk(running, "hello", False, 1, options.connections)  # warm up
            load = wrk(running, "hello", False, seconds, CROWD, threads=2, timeout=CROWD_TIMEOUT)
        finally:
            running.stop()
        progress(f"{kind.name:20} c{CROWD}    {load.requests:9.0f} req/s  timeouts {load.timeouts}  "
                 f"max {load.maxLatency / 1000:.2f} s  errors {load.errors}")
        found.append(targets.Crowd(kind.name, load.requests, load.timeouts, load.maxLatency / 1000,
                                   load.errors, differs))
    return found


def quick(chosen: list[ServerKind], kinds: dict[str, ServerKind], options: argparse.Namespace) -> None:
    """
    The rows the targets need, 2 rounds each (the log app with
    twisted-prefork --threads 0 after each round of hello), one run of each
    C{crowdServers} under 2,000 connections, then the targets: the ratios
    of medians, a worker's life over the fork() + exit() floor, the workers'
    unique memory after load and the time from exec to the first 200.
    """
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    skip = set(options.skip.split(","))
    rows: list[Row] = []
    masterUs = []
    crowds: list[targets.Crowd] = []
    startup: list[tuple[str, list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="prefork-bench-") as logs:
        logDir = Path(logs)
        work = Work(kinds[REFERENCE], options.venv, logDir)
        for _ in range(options.rounds):
            rows += measure(chosen, ["hello"], options, logDir, work)
            if "log" in skip:
                continue
            for row in measure([kinds[REFERENCE]], ["log"], options, logDir, work):
                rows.append(row)
                if not row.close and row.load.total:
                    masterUs.append(row.load.masterCpu / row.load.total * 1e6)
        if "resources" not in skip:
            rows += resourceRows(options, logDir)
        if "crowd" not in skip:
            crowds = crowded([kinds[name] for name in crowdServers(options.threads)], options, logDir, work)
        if "startup" not in skip:
            startupKinds = [k for k in chosen if k.name == REFERENCE and not k.missing(options.venv)]
            startup = [(k.name, startupTimes(k, options, logDir, starts=5)) for k in startupKinds]
    lines = targets.ratioLines(rows)
    if "life" not in skip:
        floor = forkcost.forkExitFloor(python=str(options.venv / "bin" / "python"))
        lines += targets.lifeLines(floor, forkcost.lifeCost(100, int(options.duration), 0,
                                                            options.venv / "bin" / "twistd"))
    print(f"Run {started} on {machine()}; {options.workers} workers, wrk -t1 -c{options.connections} "
          f"-d{options.duration:g}s, medians of {options.rounds} rounds; hello app (and log for {REFERENCE}); "
          f"c{CROWD}: wrk -t2 -c{CROWD} -d{max(1, round(options.duration * CROWD_SECONDS_PER_DURATION))}s "
          f"--timeout {CROWD_TIMEOUT}, keep-alive.")
    print()
    print("\n".join(table(best(iter(rows)))))
    print()
    lines += targets.memoryLines(rows)
    for name, times in startup:
        lines += targets.startupLines(name, times)
    if "log" not in skip:
        lines += targets.logLines(rows, REFERENCE, masterUs)
    if "crowd" not in skip:
        crowdModes = {REFERENCE: "t0", f"prefork-t{options.threads}-m0": f"t{options.threads}"}
        lines += targets.crowdLines(crowds, crowdModes, "gunicorn-gthread")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per server (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="threads for the threaded modes (default 4)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    parser.add_argument("--rounds", type=int, default=1, help="measure each row this many times, keep the fastest")
    parser.add_argument("--apps", default=",".join(APPS), help=f"comma-separated, of {', '.join(APPS)}")
    parser.add_argument("--servers", default="", help="comma-separated server names (default all)")
    parser.add_argument(
        "--skip", default="",
        help="comma-separated parts to skip: table, resources, fairness, respawn, startup, bodies (with --quick: "
             "log, resources, crowd, startup, life)"
    )
    parser.add_argument("--venv", type=Path, default=BENCH / ".venv", help="virtualenv for the Python servers")
    parser.add_argument("--no-install", dest="install", action="store_false", help="fail instead of installing")
    parser.add_argument("--twiggy-lib", default=os.environ.get("TWIGGY_PREFORK_LIB", ""), metavar="PATH",
                        help="Twiggy::Prefork's lib/ (default $TWIGGY_PREFORK_LIB)")
    parser.add_argument("--quick", action="store_true",
                        help="2 rounds of 5 s of the rows the targets need, then the targets as name=value lines")
    options = parser.parse_args()
    if options.quick:
        # Two rounds unless told otherwise; --duration is kept (5 s by default).
        options.rounds, options.apps = max(2, options.rounds), "hello"
        options.servers = options.servers or ",".join(QUICK)
        # In this mode --skip may name: log, resources, crowd, startup, life.
        options.skip = f"fairness,respawn,bodies,{options.skip}"
    raiseFileLimit()
    ensureTools(options.venv, options.install)
    kinds = serverKinds(options.threads, options.twiggy_lib)
    unknown = [name for name in options.servers.split(",") if name and name not in kinds]
    if unknown:
        sys.exit(f"bench: no server named {', '.join(unknown)}; known: {', '.join(kinds)}")
    chosen = [kinds[name] for name in options.servers.split(",")] if options.servers else list(kinds.values())
    skip = set(options.skip.split(","))
    if options.quick:
        quick(chosen, kinds, options)
        return
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    loadBefore = Path("/proc/loadavg").read_text().split()[:3]
    installed = [k for k in chosen if not k.missing(options.venv)]
    with tempfile.TemporaryDirectory(prefix="prefork-bench-") as logs:
        logDir = Path(logs)
        work = Work(kinds[REFERENCE], options.venv, logDir)
        rows = [] if "table" in skip else best(
            row for _ in range(options.rounds)
            for row in measure(chosen, options.apps.split(","), options, logDir, work))
        fair = [] if "fairness" in skip else list(fairness(
            [k for k in installed if not k.recycles and k.name != "waitress"], options, logDir))
        respawns = [] if "respawn" in skip else [
            (k.name, respawnCost(k, options, logDir)) for k in installed if k.recycles]
        startups = [] if "startup" in skip else [
            (k.name, startupTimes(k, options, logDir)) for k in installed if not k.recycles]
        resources = [] if "resources" in skip else best(iter(resourceRows(options, logDir)))
        bodies = [] if "bodies" in skip else [
            (k.name, largeBodies(k, options, logDir)) for k in installed
            if k.name.startswith("prefork") and not k.recycles or k.name == "gunicorn-sync"]
    loadAfter = Path("/proc/loadavg").read_text().split()[:3]
    report = [
        (
            f"Run {started} on {machine()}; {options.workers} workers, wrk -t1 -c{options.connections} "
            f"-d{options.duration:g}s on 127.0.0.1, best of {options.rounds}; "
            f"load average before {' '.join(loadBefore)}, after {' '.join(loadAfter)}."
        ),
        "",
        *table(rows),
    ]
    if resources:
        title = "Twisted resources (the hello resource; twist web in one process, --resource on the workers):"
        report += ["", title, "", *table(resources)]
    if fair:
        report += ["", "Fairness (hello app, max-requests 0):", "", *fairnessTable(fair)]
    if respawns:
        respawnTitle = (
            "Respawn cost (hello app, 1 worker retiring every 100 requests, "
            "1000 sequential requests with Connection: close):"
        )
        report += ["", respawnTitle, "",
                   "| server | median request ms | extra wait for a fresh worker ms |", "| --- | ---: | ---: |"]
        report += [f"| {name} | {median:.2f} | {extra:.2f} |" for name, (median, extra) in respawns]
    if startups:
        report += ["", f"Startup (exec to the first 200, hello app, {options.workers} workers, 7 starts):", "",
                   "| server | median ms | min ms | max ms |", "| --- | ---: | ---: | ---: |"]
        report += [f"| {name} | {statistics.median(t):.0f} | {min(t):.0f} | {max(t):.0f} |" for name, t in startups]
    if bodies:
        report += ["", "Large bodies (100 MB each way, 1 worker, one client on 127.0.0.1):", "",
                   "| server | response MB/s | upload MB/s | worker peak memory growth MiB |",
                   "| --- | ---: | ---: | ---: |"]
        report += [f"| {name} | {down:,.0f} | {up:,.0f} | {growth:.1f} |" for name, (down, up, growth) in bodies]
    print("\n".join(report))


if __name__ == "__main__":
    main()
