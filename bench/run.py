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

The peers are installed on first use: gunicorn, pyuwsgi and waitress (and
this project) from PyPI into a virtualenv (C{--venv}), Starman, Twiggy's Perl
modules and wrk with apt-get.  This script itself needs only the standard library.
"""

from __future__ import annotations

import argparse
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

import forkcost
import targets

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
APPS = ("hello", "io", "big", "upload")
PEERS = ("gunicorn", "pyuwsgi", "waitress")
DEBIAN = ("wrk", "starman")
#: What Twiggy::Prefork needs from Debian; its own lib/ is passed by path.
TWIGGY_DEBIAN = "libanyevent-perl libev-perl libparallel-prefork-perl libplack-perl twiggy"
#: The rows that the quick mode measures.
QUICK = ("twiggy-prefork-m0", "twiggy-prefork-m100", "uwsgi", "gunicorn-gthread",
         "prefork-t0-m0", "prefork-t0-m100", "prefork-t4-m0")
STARTUP_TIMEOUT = 30.0
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


def ensureTools(venv: Path, install: bool) -> None:
    missing = [name for name in DEBIAN if shutil.which(name) is None]
    if missing:
        if not install or os.geteuid() != 0:
            if shutil.which("wrk") is None:
                sys.exit("bench: missing wrk: apt-get install wrk")
            return  # the servers that are missing are shown as missing
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    tools = all((venv / "bin" / tool).exists() for tool in ("twistd", "gunicorn"))
    if not tools or not list(venv.glob("lib/*/site-packages/setproctitle")):
        if not install:
            sys.exit(f"bench: no virtualenv with the servers at {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "-q"]
        subprocess.run([*pip, *PEERS], check=True)
        # Editable, so that a run measures the working tree as it is now;
        # with titles, as installed for production (and the first template
        # is forked only where titles can be set).
        subprocess.run([*pip, "-e", f"{ROOT}[proctitle]", "--config-settings", "editable_mode=compat"], check=True)


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
        if shutil.which("plackup") is None:
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


def waitress(venv: Path, app: str, port: int, workers: int) -> list[str]:
    return [str(venv / "bin" / "waitress-serve"), f"--listen=127.0.0.1:{port}", f"benchapp:{app}"]


def serverKinds(threads: int, twiggyLib: str = "") -> dict[str, ServerKind]:
    gunicornMissing = inVenv("gunicorn", "gunicorn")
    perlApp: Callable[[str], dict[str, str]] = lambda app: {"APP": app}  # noqa: E731
    kinds = [
        ServerKind("gunicorn-sync", gunicorn(), missing=gunicornMissing),
        ServerKind("gunicorn-gthread", gunicorn("-k", "gthread", "--threads", str(threads)), missing=gunicornMissing),
        ServerKind("gunicorn-sync-m100", gunicorn("--max-requests", "100"), recycles=True, missing=gunicornMissing),
        ServerKind("uwsgi", uwsgi, missing=inVenv("uwsgi", "pyuwsgi")),
        # The Perl servers pick their application by the APP variable.
        ServerKind("starman", starman("--max-requests", "1000000"), env=perlApp, missing=onPath("starman", "starman")),
        ServerKind("starman-m100", starman("--max-requests", "100"), env=perlApp, recycles=True,
                   missing=onPath("starman", "starman")),
        ServerKind("twiggy-prefork-m0", twiggyPrefork(twiggyLib, 0), env=perlApp, missing=twiggyMissing(twiggyLib)),
        # 100 is Twiggy::Prefork's own default.
        ServerKind("twiggy-prefork-m100", twiggyPrefork(twiggyLib, 100), env=perlApp, recycles=True,
                   missing=twiggyMissing(twiggyLib)),
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
        pids = tree(self.process.pid)
        workers = [pid for pid in pids[1:] if not children(pid)] or pids[:1]
        measured = [memory(pid) for pid in workers]
        return (memory(self.process.pid)[0], statistics.mean(m[1] for m in measured),
                statistics.mean(m[0] for m in measured))

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


def milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def wrk(running: Running, app: str, close: bool, duration: float, connections: int, script: str | None = None) -> Load:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", "--timeout", "10s"]
    if close:
        command += ["-H", "Connection: close"]
    script = script or ("upload.lua" if app == "upload" else None)
    if script:
        command += ["-s", str(BENCH / script)]
    command.append(f"http://127.0.0.1:{running.port}/")
    serverPids = tree(running.process.pid)
    busy, serverCpu, wrkCpu = machineBusySeconds(), cpuSeconds(serverPids), _childCpu()
    began = time.monotonic()
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    elapsed = time.monotonic() - began
    serverPids = tree(running.process.pid)
    serverCpu = cpuSeconds(serverPids) - serverCpu
    others = (machineBusySeconds() - busy) - serverCpu - (_childCpu() - wrkCpu)
    load = Load(others=max(0.0, others / elapsed))
    total = re.search(r"(\d+) requests in", output)
    if total and serverCpu > 0:
        load.perCpu = int(total.group(1)) / serverCpu
    load.requests = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    load.p50 = milliseconds(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    load.p99 = milliseconds(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    socketErrors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socketErrors:
        load.errors += sum(int(x) for x in socketErrors.groups())
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

    @property
    def requests(self) -> float:
        return self.load.requests

    @property
    def uss(self) -> float:
        return self.memory[1]


def measure(kinds: list[ServerKind], apps: list[str], options: argparse.Namespace, logs: Path) -> Iterator[Row]:
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
                wrk(running, app, False, 1, options.connections)  # warm up
                for close in (False, True):
                    load = wrk(running, app, close, options.duration, options.connections)
                    yield Row(kind.name, app, close, load, running.startup, running.memory())
                    progress(f"{kind.name:20} {app:7} {'close' if close else 'keep-alive':10} "
                             f"{load.requests:9.0f} req/s  p99 {load.p99:7.2f} ms  others {load.others:.2f} cores")
            finally:
                running.stop()


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
    baseline = {(r.app, r.close, r.server): r.load.requests for r in rows}
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
            ratios.append(f"{r.load.requests / base:.2f}" if base else "")
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


def quick(chosen: list[ServerKind], options: argparse.Namespace) -> None:
    """
    The rows the targets need, 2 rounds each, then the targets: the ratios
    of medians, a worker's life over the fork() + exit() floor, the workers'
    unique memory after load and the time from exec to the first 200.
    """
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="prefork-bench-") as logs:
        logDir = Path(logs)
        rows = [row for _ in range(options.rounds) for row in measure(chosen, ["hello"], options, logDir)]
        kinds = [k for k in chosen if k.name == "prefork-t0-m0" and not k.missing(options.venv)]
        startup = [(k.name, startupTimes(k, options, logDir, starts=5)) for k in kinds]
    floor = forkcost.forkExitFloor(python=str(options.venv / "bin" / "python"))
    lives = forkcost.lifeCost(100, int(options.duration), 0, options.venv / "bin" / "twistd")
    print(f"Run {started} on {machine()}; {options.workers} workers, wrk -t1 -c{options.connections} "
          f"-d{options.duration:g}s, medians of {options.rounds} rounds; hello app.")
    print()
    print("\n".join(table(best(iter(rows)))))
    print()
    lines = targets.ratioLines(rows) + targets.lifeLines(floor, lives) + targets.memoryLines(rows)
    for name, times in startup:
        lines += targets.startupLines(name, times)
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
        "--skip", default="", help="comma-separated parts to skip: table, fairness, respawn, startup, bodies"
    )
    parser.add_argument("--venv", type=Path, default=BENCH / ".venv", help="virtualenv for the Python servers")
    parser.add_argument("--no-install", dest="install", action="store_false", help="fail instead of installing")
    parser.add_argument("--twiggy-lib", default=os.environ.get("TWIGGY_PREFORK_LIB", ""), metavar="PATH",
                        help="Twiggy::Prefork's lib/ (default $TWIGGY_PREFORK_LIB)")
    parser.add_argument("--quick", action="store_true",
                        help="2 rounds of 5 s of the rows the targets need, then the targets as name=value lines")
    options = parser.parse_args()
    if options.quick:
        options.rounds, options.duration, options.apps = 2, 5, "hello"
        options.servers = options.servers or ",".join(QUICK)
        options.skip = "fairness,respawn,bodies"
    ensureTools(options.venv, options.install)
    kinds = serverKinds(options.threads, options.twiggy_lib)
    unknown = [name for name in options.servers.split(",") if name and name not in kinds]
    if unknown:
        sys.exit(f"bench: no server named {', '.join(unknown)}; known: {', '.join(kinds)}")
    chosen = [kinds[name] for name in options.servers.split(",")] if options.servers else list(kinds.values())
    skip = set(options.skip.split(","))
    if options.quick:
        quick(chosen, options)
        return
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    loadBefore = Path("/proc/loadavg").read_text().split()[:3]
    installed = [k for k in chosen if not k.missing(options.venv)]
    with tempfile.TemporaryDirectory(prefix="prefork-bench-") as logs:
        logDir = Path(logs)
        rows = [] if "table" in skip else best(
            row for _ in range(options.rounds) for row in measure(chosen, options.apps.split(","), options, logDir))
        fair = [] if "fairness" in skip else list(fairness(
            [k for k in installed if not k.recycles and k.name != "waitress"], options, logDir))
        respawns = [] if "respawn" in skip else [
            (k.name, respawnCost(k, options, logDir)) for k in installed if k.recycles]
        startups = [] if "startup" in skip else [
            (k.name, startupTimes(k, options, logDir)) for k in installed if not k.recycles]
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
