"""
The targets that the quick mode of C{run.py} checks: ratios of medians from
one run, each printed as C{name=value (goal X)}.

Throughput targets are ratios of requests/s between two rows of the same
run; the worker's life is the CPU that recycling costs beyond a worker's
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
    Ratio("keepalive_vs_twiggy", "prefork-t0-m0", "twiggy-prefork-m0", False, 1.5),
    Ratio("recycle100_keepalive_vs_twiggy", "prefork-t0-m100", "twiggy-prefork-m100", False, 1.0),
    Ratio("recycle100_close_vs_twiggy", "prefork-t0-m100", "twiggy-prefork-m100", True, 1.0),
    Ratio("threads_keepalive_vs_gthread", "prefork-t4-m0", "gunicorn-gthread", False, 1.5),
    Ratio("threads_close_vs_gthread", "prefork-t4-m0", "gunicorn-gthread", True, 1.2),
    Ratio("close_vs_uwsgi", "prefork-t0-m0", "uwsgi", True, 0.5),
)

#: The most a worker's life may cost beyond its requests, in fork + exit floors.
LIFE_GOAL = 2.0
#: The most unique memory a worker may hold after load, MiB.
USS_GOAL = 3.0
#: The longest median from exec to the first 200, ms.
FIRST_200_GOAL = 250.0


def medians(rows: Iterable[Measured]) -> dict[tuple[str, bool], float]:
    """
    The median requests/s of each server's rounds of the hello app, by
    server and connection mode; missing servers left out.
    """
    rounds: dict[tuple[str, bool], list[float]] = {}
    for row in rows:
        if row.app == "hello" and not row.missing:
            rounds.setdefault((row.server, row.close), []).append(row.requests)
    return {key: statistics.median(values) for key, values in rounds.items()}


def ratioLines(rows: list[Measured]) -> list[str]:
    found = medians(rows)
    lines = []
    for ratio in RATIOS:
        mine, theirs = found.get((ratio.server, ratio.close)), found.get((ratio.peer, ratio.close))
        if mine and theirs:
            lines.append(f"{ratio.name}={mine / theirs:.2f} (goal {ratio.goal:g})")
        else:
            lines.append(f"{ratio.name}=missing (goal {ratio.goal:g}): "
                         f"{ratio.server if not mine else ratio.peer} was not measured")
    return lines


def memoryLines(rows: list[Measured]) -> list[str]:
    uss: dict[str, list[float]] = {}
    for row in rows:
        if row.server.startswith("prefork") and row.app == "hello" and not row.missing:
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
