"""
The targets that the quick mode of C{run.py} checks: ratios of medians from
one run, each printed as C{name=value (goal X)}.

Throughput targets are ratios of requests/s between two rows of the same
run, and only of rows that did the same work as the reference (a row whose
answer differed is named, with what differed, instead of a ratio); the
worker's life is the CPU that recycling costs beyond a worker's
requests over the fork() + exit() floor of the same template
(C{forkcost.py}); memory and startup are absolute.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


class Measured(Protocol):
    server: str
    app: str
    close: bool
    missing: str
    differs: str

    @property
    def requests(self) -> float: ...

    @property
    def uss(self) -> float: ...


@dataclass(frozen=True)
class Ratio:
    """
    C{server}'s median requests/s over C{peer}'s, hello app.
    """

    name: str
    server: str
    peer: str
    close: bool
    goal: float


RATIOS = (
    Ratio("close_vs_twiggy", "prefork-t0-m0", "twiggy-prefork-m0", True, 1.0),
    Ratio("keepalive_vs_twiggy", "prefork-t0-m0", "twiggy-prefork-m0", False, 2.0),
    Ratio("recycle100_keepalive_vs_twiggy", "prefork-t0-m100", "twiggy-prefork-m100", False, 1.0),
    Ratio("recycle100_close_vs_twiggy", "prefork-t0-m100", "twiggy-prefork-m100", True, 1.0),
    Ratio("threads_keepalive_vs_gthread", "prefork-t4-m0", "gunicorn-gthread", False, 1.5),
    Ratio("threads_close_vs_gthread", "prefork-t4-m0", "gunicorn-gthread", True, 1.2),
    Ratio("close_vs_uwsgi", "prefork-t0-m0", "uwsgi", True, 0.5),
    Ratio("resource_keepalive_vs_one_process", "prefork-resource", "twist-web", False, 1.3),
    Ratio("resource_close_vs_one_process", "prefork-resource", "twist-web", True, 1.1),
)

#: The most a worker's life may cost beyond its requests, in fork + exit floors.
LIFE_GOAL = 2.0
#: The most unique memory a worker may hold after load, MiB.
USS_GOAL = 3.0
#: The longest median from exec to the first 200, ms.
FIRST_200_GOAL = 250.0
#: The share of its throughput a server keeps when the app logs a line per request.
LOG_KEEPS_GOAL = 0.85
#: The most CPU the master may spend per logged line, µs.
LOG_MASTER_GOAL = 5.0
#: 2,000 keep-alive connections: no request over wrk's timeout, the longest
#: latency in seconds, and the throughput over gunicorn gthread's.
CROWD_TIMEOUTS_GOAL = 0
CROWD_LATENCY_GOAL = 1.0
CROWD_VS_GTHREAD_GOAL = 1.0


def medians(rows: Iterable[Measured], app: str = "hello") -> dict[tuple[str, bool], float]:
    """
    The median requests/s of each server's rounds of C{app}, by server and
    connection mode; missing servers and those that did different work left
    out.
    """
    rounds: dict[tuple[str, bool], list[float]] = {}
    for row in rows:
        if row.app == app and not row.missing and not row.differs:
            rounds.setdefault((row.server, row.close), []).append(row.requests)
    return {key: statistics.median(values) for key, values in rounds.items()}


def unusable(rows: Iterable[Measured], server: str, app: str = "hello") -> str:
    """
    Why C{server} has no ratio: it did different work, was missing, or was
    not measured.
    """
    for row in rows:
        if row.server == server and row.app == app:
            if row.differs:
                return f"different work: {server}: {row.differs}"
            if row.missing:
                return f"missing: {server}: {row.missing}"
    return f"missing: {server} was not measured"


def ratioLines(rows: list[Measured]) -> list[str]:
    found = medians(rows)
    lines = []
    for ratio in RATIOS:
        mine, theirs = found.get((ratio.server, ratio.close)), found.get((ratio.peer, ratio.close))
        if mine and theirs:
            lines.append(f"{ratio.name}={mine / theirs:.2f} (goal {ratio.goal:g})")
        else:
            why = unusable(rows, ratio.server if not mine else ratio.peer)
            lines.append(f"{ratio.name}={why.split(':')[0]} (goal {ratio.goal:g}): {why.partition(': ')[2]}")
    return lines


def logLines(rows: list[Measured], server: str, masterUs: list[float]) -> list[str]:
    """
    C{server}'s median throughput with the log app over that with the hello
    app (C{rows} hold both), and the master's CPU per logged line
    (C{masterUs}, µs, one per round of the log app with keep-alive).
    """
    hello, logged = medians(rows), medians(rows, "log")
    lines = []
    for suffix, close in (("", False), ("_close", True)):
        base, mine = hello.get((server, close)), logged.get((server, close))
        if base and mine:
            lines.append(f"log_keeps{suffix}={mine / base:.2f} (goal {LOG_KEEPS_GOAL:g})")
        else:
            why = unusable(rows, server, "log" if base else "hello")
            lines.append(f"log_keeps{suffix}={why.split(':')[0]} (goal {LOG_KEEPS_GOAL:g}): {why.partition(': ')[2]}")
    if masterUs and logged.get((server, False)):
        lines.append(f"log_master_us_per_line={statistics.median(masterUs):.2f} (goal {LOG_MASTER_GOAL:g})")
    else:
        lines.append(f"log_master_us_per_line=missing (goal {LOG_MASTER_GOAL:g})")
    return lines


@dataclass(frozen=True)
class Crowd:
    """
    One server under 2,000 keep-alive connections.
    """

    server: str
    requests: float
    timeouts: int
    maxLatency: float
    errors: int
    differs: str = ""


def crowdLines(crowds: list[Crowd], modes: dict[str, str], peer: str) -> list[str]:
    """
    C{modes}: the short name (C{t0}) of each twisted-prefork server measured;
    C{peer}: the server whose throughput is the floor.
    """
    found = {crowd.server: crowd for crowd in crowds}
    theirs = found.get(peer)
    lines = []
    if theirs:
        lines.append(f"c2000[{peer}]: {theirs.requests:,.0f} req/s, {theirs.timeouts} timeouts, "
                     f"max latency {theirs.maxLatency:.2f} s, {theirs.errors} socket errors"
                     + (f"; different work: {theirs.differs}" if theirs.differs else ""))
    for server, mode in modes.items():
        mine = found.get(server)
        name = f"c2000_{mode}"
        if not mine:
            lines.append(f"{name}=missing: {server} was not measured")
            continue
        if mine.differs:
            lines.append(f"{name}=different work: {server}: {mine.differs}")
            continue
        lines.append(f"{name}_timeouts={mine.timeouts} (goal {CROWD_TIMEOUTS_GOAL})")
        lines.append(f"{name}_max_latency_s={mine.maxLatency:.2f} (goal {CROWD_LATENCY_GOAL:g})")
        if theirs and not theirs.differs and theirs.requests:
            lines.append(f"{name}_vs_gthread={mine.requests / theirs.requests:.2f} (goal {CROWD_VS_GTHREAD_GOAL:g})")
        else:
            why = f"different work: {theirs.differs}" if theirs else "not measured"
            lines.append(f"{name}_vs_gthread=missing (goal {CROWD_VS_GTHREAD_GOAL:g}): {peer} {why}")
    return lines


def memoryLines(rows: list[Measured]) -> list[str]:
    uss: dict[str, list[float]] = {}
    for row in rows:
        if row.server.startswith("prefork") and row.app == "hello" and not row.missing and not row.differs:
            uss.setdefault(row.server, []).append(row.uss)
    return [f"worker_uss_mib[{server}]={statistics.median(values):.1f} (goal <= {USS_GOAL:g})"
            for server, values in uss.items()]


def lifeLines(floor: float, lives: dict[str, float]) -> list[str]:
    """
    C{lives}: by connection mode, the CPU ms of a worker's life beyond its
    requests; C{floor}: the fork() + exit() CPU ms of the template.
    """
    lines = [f"fork_exit_floor_ms={floor:.2f}"]
    for mode, life in lives.items():
        lines.append(f"worker_life_{mode}_ms={life:.1f}")
        lines.append(f"worker_life_{mode}_vs_floor={life / floor:.2f} (goal <= {LIFE_GOAL:g})")
    return lines


def startupLines(server: str, times: list[float]) -> list[str]:
    return [f"first_200_after_exec_ms[{server}]={statistics.median(times):.0f} (goal <= {FIRST_200_GOAL:g})"]
