"""
CPU per request in the workers, and in the master, under wrk load: the cost
of what runs beside the application (heartbeats, status reports, counting).

    python bench/workercpu.py [--twistd PATH ...] [--rounds 3] [--seconds 6]

Give --twistd more than once to compare builds (another checkout's venv,
say); the runs alternate so that a busy machine hurts each build alike.
Needs wrk.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sysconfig
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpuSeconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def servingPort(server: subprocess.Popen[str]) -> int:
    """
    Read a starting C{twistd prefork}'s output until its first generation
    serves; return the port it listens on.
    """
    assert server.stdout is not None
    port = None
    for line in server.stdout:
        match = re.search(r"Listening on http://127\.0\.0\.1:(\d+)/", line)
        port = int(match.group(1)) if match else port
        if "Generation 1 serving" in line and port is not None:
            return port
    raise RuntimeError("the server exited before it served")


def run(twistd: str, seconds: int) -> tuple[int, float, float]:
    """
    Serve the demo app with 2 workers; return the requests wrk made, the
    workers' CPU microseconds per request and the master's CPU seconds.
    """
    command = [twistd, "-n", "--pidfile=", "prefork", "--listen", "tcp:0:interface=127.0.0.1", "--workers", "2",
               "--max-requests", "0", "--spare-workers", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port = servingPort(server)
        workers = [w for template in children(server.pid) for w in children(template)]
        before = sum(map(cpuSeconds, workers)), cpuSeconds(server.pid)
        out = subprocess.run(["wrk", "-t1", "-c10", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
                             capture_output=True, text=True, check=True).stdout
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        after = sum(map(cpuSeconds, workers)), cpuSeconds(server.pid)
        return requests, 1e6 * (after[0] - before[0]) / requests, after[1] - before[1]
    finally:
        server.terminate()
        server.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--twistd", action="append", help="a twistd executable [default: this Python's]")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6)
    options = parser.parse_args()
    builds = options.twistd or [str(Path(sysconfig.get_path("scripts")) / "twistd")]
    results: dict[str, list[float]] = {build: [] for build in builds}
    for _ in range(options.rounds):
        for build in builds:
            requests, perRequest, master = run(build, options.seconds)
            results[build].append(perRequest)
            print(f"{build}: {requests} requests, workers {perRequest:.1f} µs CPU/request, master {master:.2f} s CPU")
    for build, values in results.items():
        print(f"{build}: mean {sum(values) / len(values):.1f} µs CPU/request over {len(values)} runs")


if __name__ == "__main__":
    main()
