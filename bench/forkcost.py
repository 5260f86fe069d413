"""
What recycling a worker costs, against what the requests of its life cost:
the floor that fork() and exit() of a template put under --max-requests.

    python bench/forkcost.py [--requests 100] [--seconds 5] [--threads 0]

1. Serves the hello app with --max-requests 0 under wrk (keep-alive, then
   Connection: close) and reads the CPU that the master, template and
   workers used per request.
2. Does the same with --max-requests N: the difference, times N, is what one
   worker's life costs beyond its requests (fork, boot, copy-on-write faults,
   exit, the master's bookkeeping).
3. In a process that imported what a template imports, forks children that
   exit at once: the cost of fork() and exit() alone, which no server built
   on fork can avoid.

Prints the share of --max-requests 0 throughput that the floor leaves
possible, next to the share the real recycling keeps.  Needs wrk.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

from workercpu import servingPort

BENCH = Path(__file__).parent
TICK = os.sysconf("SC_CLK_TCK")


def _treeCpu(pid: int) -> float:
    """
    CPU seconds of a process and all its descendants, living (their own
    counts) or reaped (in their parent's cutime and cstime).
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(f) for f in fields[11:15]) / TICK
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            total += _treeCpu(int(child))
        except FileNotFoundError:
            pass
    return total


def serverCpuPerRequest(maxRequests: int, close: bool, seconds: int, threads: int, twistd: Path | None = None) -> float:
    """
    Microseconds of server CPU (master, template, workers) per request.
    """
    twistd = twistd or Path(sysconfig.get_path("scripts")) / "twistd"
    command = [str(twistd), "-n", "--pidfile=", "prefork", "--app", "benchapp:hello", "--listen",
               "tcp:0:interface=127.0.0.1", "--workers", "2", "--threads", str(threads),
               "--max-requests", str(maxRequests)]
    server = subprocess.Popen(command, cwd=BENCH, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    drain = None
    try:
        port = servingPort(server)
        # Keep reading, so that the server never blocks on a full pipe.
        drain = subprocess.Popen(["cat"], stdin=server.stdout, stdout=subprocess.DEVNULL)
        before = _treeCpu(server.pid)
        wrk = ["wrk", "-t1", "-c50", f"-d{seconds}s", *(["-H", "Connection: close"] if close else []),
               f"http://127.0.0.1:{port}/"]
        out = subprocess.run(wrk, capture_output=True, text=True, check=True).stdout
        used = _treeCpu(server.pid) - before
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        return 1e6 * used / requests
    finally:
        server.terminate()
        server.wait(60)
        if drain is not None:
            drain.wait(10)


def forkExitFloor(cycles: int = 300, python: str = sys.executable) -> float:
    """
    Milliseconds of CPU (parent and child) for one fork() and _exit() of a
    process that imported what a template imports, frozen as a template is.
    """
    script = f"""
import gc, os, resource, sys
gc.disable()
sys.path.insert(0, {str(BENCH)!r})
import prefork.child.template, benchapp
from prefork.twistedinternals import reserveSpareDescriptor
reserveSpareDescriptor()
gc.freeze()
def cpu():
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
began = cpu()
for _ in range({cycles}):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
print((cpu() - began) / {cycles} * 1000)
"""
    return float(subprocess.run([python, "-c", script], capture_output=True, text=True, check=True).stdout)


def lifeCost(requests: int, seconds: int, threads: int, twistd: Path | None = None) -> dict[str, float]:
    """
    By connection mode, the CPU ms one worker's life costs beyond its
    C{requests} requests.
    """
    lives = {}
    for close in (False, True):
        steady = serverCpuPerRequest(0, close, seconds, threads, twistd)
        recycling = serverCpuPerRequest(requests, close, seconds, threads, twistd)
        lives["close" if close else "keepalive"] = (recycling - steady) * requests / 1000
    return lives


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--requests", type=int, default=100, help="--max-requests to compare with 0")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    options = parser.parse_args()
    floor = forkExitFloor()
    print(f"fork() + exit() of a template: {floor:.2f} ms CPU")
    for close in (False, True):
        kind = "Connection: close" if close else "keep-alive"
        steady = serverCpuPerRequest(0, close, options.seconds, options.threads)
        recycling = serverCpuPerRequest(options.requests, close, options.seconds, options.threads)
        life = steady * options.requests / 1000
        perLife = (recycling - steady) * options.requests / 1000
        print(f"{kind}: {steady:.0f} µs CPU per request with --max-requests 0, {recycling:.0f} with "
              f"{options.requests}; a worker's {options.requests} requests {life:.1f} ms, its recycling "
              f"{perLife:.1f} ms (of which fork+exit {floor:.1f}); throughput kept: "
              f"{steady / recycling:.0%}, at most {life / (life + floor):.0%} with fork+exit alone")


if __name__ == "__main__":
    main()
