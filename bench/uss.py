"""
Measure each worker's unique memory (USS, from /proc/PID/smaps_rollup) with
and without preloading the application in the template.

    python bench/uss.py [--app bench.apps.bigapp:application] [--workers 4] [--threads 4]

Starts the real twistd prefork for each mode, warms every worker up with
requests, reads the workers' memory and prints one line per mode.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

from prefork.memory import residentBytes, uniqueBytes


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def measure(app: str, workers: int, preload: bool, requests: int, threads: int) -> tuple[float, float, float]:
    twistd = Path(sysconfig.get_path("scripts")) / "twistd"
    command = [str(twistd), "-n", "--pidfile=", "prefork", "--app", app, "--workers", str(workers),
               "--listen", "tcp:0:interface=127.0.0.1", "--max-requests", "0", "--status", "tcp:0:interface=127.0.0.1",
               "--threads", str(threads)]
    if not preload:
        command.append("--no-preload")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               cwd=Path(__file__).parent.parent, start_new_session=True)
    try:
        ports = {}
        assert process.stdout is not None
        for line in process.stdout:
            match = re.search(r"(Listening on|Status page on) http://127\.0\.0\.1:(\d+)/", line)
            if match:
                ports[match.group(1)] = int(match.group(2))
            if "Generation 1 serving" in line:
                break
        port = ports["Listening on"]
        for i in range(requests):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", "/" + "x" * (i % 50))
            connection.getresponse().read()
            connection.close()
        time.sleep(1.5)  # let every worker's garbage collector run over its heap
        connection = http.client.HTTPConnection("127.0.0.1", ports["Status page on"], timeout=30)
        connection.request("GET", "/status.json")
        pids = [worker["pid"] for worker in json.loads(connection.getresponse().read())["workers"]]
        connection.close()
        template = parent(pids[0])
        uss = [uniqueBytes(pid) for pid in pids]
        rss = [residentBytes(pid) for pid in pids]
        return sum(uss) / len(uss) / 2**20, sum(rss) / len(rss) / 2**20, uniqueBytes(template) / 2**20
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--app", default="bench.apps.bigapp:application")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--threads", type=int, default=4, help="--threads of the server")
    options = parser.parse_args()
    for preload in (True, False):
        uss, rss, template = measure(options.app, options.workers, preload, options.requests, options.threads)
        mode = "preload   " if preload else "no-preload"
        print(f"{options.app} {mode}: USS per worker {uss:6.1f} MB, RSS per worker {rss:6.1f} MB, "
              f"template USS {template:6.1f} MB")


if __name__ == "__main__":
    main()
