"""
The server's status in Prometheus' text exposition format (version 0.0.4):
counters and gauges named C{prefork_*}, per worker labelled with its pid and
generation, restarts labelled with their reason, the requests the server
refused itself with their status.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prefork.status.collector import WORKER_STATES, ServerStatus, WorkerStatus

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

#: Each per-worker gauge: its name, help, and how to read it from a worker.
_WORKER_GAUGES = [
    ("prefork_worker_request_limit", "Requests the worker serves before it retires (0: no limit).", lambda w: w.limit),
    ("prefork_worker_in_flight", "Requests the worker has admitted and not answered yet.", lambda w: w.inFlight),
    ("prefork_worker_resident_memory_bytes", "The worker's resident set size.", lambda w: w.rss),
    ("prefork_worker_unique_memory_bytes", "The worker's unique set size: its private pages.", lambda w: w.uss),
    (
        "prefork_worker_proportional_memory_bytes",
        "The worker's proportional set size: shared pages split between sharers.",
        lambda w: w.pss,
    ),
    ("prefork_worker_age_seconds", "Seconds since the worker was born.", lambda w: round(w.age, 3)),
    (
        "prefork_worker_last_request_duration_seconds",
        "How long the worker's last request took.",
        lambda w: w.lastDuration / 1e6,
    ),
]

Sample = tuple[dict[str, str], float]


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    escaped = (value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') for value in labels.values())
    return "{" + ",".join(f'{name}="{value}"' for name, value in zip(labels, escaped, strict=True)) + "}"


def _family(name: str, kind: str, help: str, samples: Iterable[Sample]) -> Iterator[str]:
    yield f"# HELP {name} {help}"
    yield f"# TYPE {name} {kind}"
    for labels, value in samples:
        yield f"{name}{_labels(labels)} {value}"


def _workerLabels(worker: WorkerStatus) -> dict[str, str]:
    return {"worker": str(worker.pid), "generation": str(worker.generation)}


def render(status: ServerStatus) -> str:
    """
    The exposition text of C{status}.
    """
    workers = status.workers
    lines = [
        *_family(
            "prefork_uptime_seconds", "gauge", "Seconds since the master started.", [({}, round(status.uptime, 3))]
        ),
        *_family("prefork_generation", "gauge", "The number of the newest generation.", [({}, status.generation)]),
        *_family(
            "prefork_workers_wanted", "gauge", "Workers each generation keeps serving.", [({}, status.workersWanted)]
        ),
        *_family(
            "prefork_workers", "gauge", "Live workers by state.",
            [({"state": s}, n) for s, n in status.byState().items()],
        ),
        *_family(
            "prefork_requests_total", "counter", "Requests admitted by every worker, past and present.",
            [({}, status.requestsTotal)],
        ),
        *_family(
            "prefork_requests_per_second", "gauge", "Requests per second over the last 10 seconds.",
            [({}, round(status.requestsPerSecond, 3))],
        ),
        *_family(
            "prefork_restarts_total", "counter", "Workers replaced, by reason.",
            [({"reason": reason}, n) for reason, n in status.restarts.items()],
        ),
        *_family(
            "prefork_refused_requests_total", "counter",
            "Requests the server refused itself, never reaching the application, by status.",
            [({"status": str(code)}, n) for code, n in status.refusals.items()],
        ),
        *_family(
            "prefork_worker_requests_total", "counter", "Requests admitted by the worker.",
            [(_workerLabels(w), w.served) for w in workers],
        ),
        *_family(
            "prefork_worker_state", "gauge", "1 for the worker's state, 0 for the others.",
            [({**_workerLabels(w), "state": s}, int(w.state == s)) for w in workers for s in WORKER_STATES],
        ),
    ]
    for name, help, read in _WORKER_GAUGES:
        lines += _family(name, "gauge", help, [(_workerLabels(w), read(w)) for w in workers])
    return "\n".join(lines) + "\n"
