"""
What a worker writes to its standard error, the master reads and logs line
by line: on the real server, a flood without a newline costs the master
little CPU, no memory, and none of its responsiveness, and reaches the log
in marked pieces.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from prefork.lineframing import MAX_LINE
from server import TIMEOUT, Server
from statusclient import STATUS, probe, statusPort

APP = ("--app", "noisyapp:application")
MIB = 1024 * 1024
#: The most a probe may take, as a load balancer would see it.
PROBE_BUDGET = 0.1


def cpuSeconds(pid: int) -> float:
    """
    The user and system CPU time process C{pid} has used.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory(pid: int, key: str) -> int:
    """
    A size in bytes from C{/proc/PID/status}: C{VmRSS}, or its peak C{VmHWM}.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} for {pid}")


def timedProbe(port: int) -> float:
    started = time.monotonic()
    assert probe(port, "/healthz") == (200, "ok\n")
    return time.monotonic() - started


def test_a_flood_without_a_newline(serve) -> None:
    """
    A request makes the worker write 32 MiB to standard error in 8 writes
    without a newline.  The master logs it in pieces of at most
    L{MAX_LINE} bytes as it arrives, spends well under a second of CPU on
    it, holds none of it, and answers its health probe at once meanwhile.
    """
    server: Server = serve(*APP, *STATUS, "--workers", "1")
    port = statusPort(server)
    timedProbe(port)
    cpuBefore, rssBefore = cpuSeconds(server.pid), memory(server.pid, "VmRSS")
    start = len(server.lines)
    answers: list[tuple[int, dict[str, str], bytes]] = []
    request = threading.Thread(target=lambda: answers.append(server.get("/spew?mb=32&writes=8")))
    request.start()
    during: list[float] = []
    deadline = time.monotonic() + TIMEOUT
    while not any("spew done in" in line for line in server.lines[start:]) and time.monotonic() < deadline:
        during.append(timedProbe(port))
        # Probe as a monitor does, not as fast as the test can.
        time.sleep(0.01)
    server.waitFor(r"spew done in \d+", after=start)
    request.join(TIMEOUT)
    cpu = cpuSeconds(server.pid) - cpuBefore
    peak = memory(server.pid, "VmHWM") - rssBefore
    after = min(timedProbe(port) for _ in range(3))

    assert answers and answers[0][0] == 200 and answers[0][2] == b"wrote %d bytes\n" % (32 * MIB)
    assert cpu < 0.5, f"the master spent {cpu:.2f} s of CPU on 32 MiB of output"
    assert peak < 16 * MIB, f"the master's memory peaked {peak / MIB:.1f} MiB above where it was"
    # One probe may meet the machine's other load; most must be prompt.
    if during:
        assert sorted(during)[len(during) // 2] < PROBE_BUDGET, during
    assert after < PROBE_BUDGET

    pieces = [line for line in server.lines[start:] if "eeee" in line]
    assert len(pieces) == 32 * MIB // MAX_LINE
    assert "[continued]" not in pieces[0] and pieces[0].endswith(f"[cut at {MAX_LINE} bytes, continues]")
    assert all(f"[continued] {'e' * MAX_LINE} [cut at" in piece for piece in pieces[1:-1])
    assert pieces[-1].endswith("[continued] " + "e" * MAX_LINE)
