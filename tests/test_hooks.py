"""
Server hooks, checked against the processes that really ran: a hooks module
records every call (process, hook, arguments) to a file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from server import APPS, TIMEOUT, twistd, waitUntil

APP = ("--app", "testapp:application")
HOOKS = ("--hooks", "recordinghooks")


def environment(log: Path, fail: str = "") -> dict[str, str]:
    return {**os.environ, "HOOKS_LOG": str(log), "HOOKS_FAIL": fail}


def calls(log: Path) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = defaultdict(list)
    if log.exists():
        for line in log.read_text().splitlines():
            record = json.loads(line)
            found[record["hook"]].append(record)
    return found


def pids(records: list[dict], key: str = "pid") -> set[int]:
    return {record[key] for record in records}


def test_every_hook_in_its_process(serve, tmp_path: Path) -> None:
    log = tmp_path / "hooks.jsonl"
    server = serve(*APP, *HOOKS, "--workers", "2", "--max-requests", "3", env=environment(log))
    served = {int(server.get("/")[2]) for _ in range(10)}
    server.signal(signal.SIGHUP)
    server.waitFor("Generation 2 serving")
    served |= {int(server.get("/")[2]) for _ in range(4)}
    assert server.stop() == 0
    found = calls(log)

    master = server.pid
    for hook in ("on_starting", "when_ready", "on_reload", "on_exit"):
        assert [r["pid"] for r in found[hook]] == [master], hook
    assert found["when_ready"][0]["generation"] == 1 and found["on_reload"][0]["generation"] == 1
    # Every worker that served had post_fork, in itself, and its reactor ran.
    forked = pids(found["post_fork"])
    booted = pids(found["post_worker_init"])
    assert served <= booted <= forked
    assert all(r["worker"] == r["pid"] and r["master"] == master for r in found["post_fork"])
    # pre_fork ran in the two templates, once for each fork.
    assert len(found["pre_fork"]) == len(found["child_exit"])
    assert master not in pids(found["pre_fork"]) and len(pids(found["pre_fork"])) == 2
    assert {r["worker"] for r in found["pre_fork"]} == {None}
    # Each request, in the worker's WSGI thread that ran it.
    assert len(found["pre_request"]) == len(found["post_request"]) == 14
    assert pids(found["post_request"]) == served
    assert {r["status"] for r in found["post_request"]} == {"200 OK"}
    assert all(r["thread"] != "MainThread" for r in found["pre_request"] + found["post_request"])
    # Every worker has gone: each that booted had worker_exit in itself,
    # each had child_exit in the master, and those that retired at their
    # limit say so.  (One told to stop while it booted dies of the signal.)
    assert pids(found["worker_exit"]) == booted
    assert pids(found["child_exit"], "worker") >= forked and pids(found["child_exit"]) == {master}
    assert {r["status"] for r in found["child_exit"] if r["worker"] in booted} == {0}
    assert {r["reason"] for r in found["child_exit"] if r["worker"] not in booted} <= {"was killed by SIGTERM"}
    retired = [r for r in found["child_exit"] if r["reason"] == "limit"]
    assert len(retired) >= 2 and all(r["served"] == r["limit"] == 3 for r in retired)
    assert not found["worker_int"] and not found["worker_abort"]


def test_worker_int_on_a_quick_stop(serve, tmp_path: Path) -> None:
    log = tmp_path / "hooks.jsonl"
    server = serve(*APP, *HOOKS, "--workers", "1", "--spare-workers", "0", env=environment(log))
    worker = int(server.get("/")[2])
    server.signal(signal.SIGINT)
    server.wait()
    found = calls(log)
    assert pids(found["worker_int"]) == {worker}
    assert [r["reason"] for r in found["worker_exit"]] == ["quick"]


def test_worker_abort_on_the_watchdog(serve, tmp_path: Path) -> None:
    log = tmp_path / "hooks.jsonl"
    server = serve("--app", "testapp:application", *HOOKS, "--workers", "1", "--threads", "0", "--timeout", "2",
                   env=environment(log))
    stuck = int(server.get("/")[2])
    connection = server.connection()
    connection.request("GET", "/sleep?seconds=30")
    server.waitFor(f"Worker {stuck} sent no heartbeat")
    waitUntil(lambda: pids(calls(log)["child_exit"], "worker") >= {stuck}, what="the stuck worker's exit")
    connection.close()
    found = calls(log)
    assert pids(found["worker_abort"]) == {stuck}
    assert [r["reason"] for r in found["child_exit"] if r["worker"] == stuck] == ["timeout"]


def test_failing_hooks_after_start_never_stop_the_server(serve, tmp_path: Path) -> None:
    log = tmp_path / "hooks.jsonl"
    failing = "when_ready,on_reload,child_exit,pre_request,post_request,worker_exit,pre_fork_never"
    server = serve(*APP, *HOOKS, "--workers", "1", "--max-requests", "2", env=environment(log, failing))
    answers = [server.get("/") for _ in range(6)]
    assert [status for status, _, _ in answers] == [200] * 6
    server.signal(signal.SIGHUP)
    server.waitFor("Generation 2 serving")
    assert server.get("/")[0] == 200
    for hook in ("when_ready", "pre_request", "post_request", "child_exit", "on_reload"):
        server.waitFor(f"Hook {hook}.* raised")
    server.waitFor("RuntimeError: post_request failed on purpose")
    assert server.stop() == 0


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [twistd(), "-n", "--pidfile=", "prefork", "--listen", "tcp:0:interface=127.0.0.1", *args],
        capture_output=True, text=True, cwd=APPS, timeout=TIMEOUT, env=env,
    )


def test_on_starting_failing_stops_the_start(tmp_path: Path) -> None:
    log = tmp_path / "hooks.jsonl"
    result = run(*APP, *HOOKS, env=environment(log, "on_starting"))
    assert result.returncode == 1
    # twistd's log has taken over standard error by then.
    output = (result.stdout + result.stderr).splitlines()
    assert [line for line in output if "on_starting" in line or "Traceback" in line] == [
        output[-1]
    ] and output[-1].endswith("twistd prefork: hook on_starting raised RuntimeError: on_starting failed on purpose")
    assert list(calls(log)) == ["on_starting"]


def test_hooks_that_cannot_be_loaded_stop_the_start(tmp_path: Path) -> None:
    result = run(*APP, "--hooks", "nosuchhooks", env=environment(tmp_path / "log"))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "twistd prefork: cannot import --hooks 'nosuchhooks': no module named 'nosuchhooks'"
    ]


@pytest.mark.parametrize("hook", ["pre_fork", "post_fork", "post_worker_init"])
def test_a_worker_whose_boot_hook_fails_fails_at_boot(tmp_path: Path, hook: str) -> None:
    log = tmp_path / "hooks.jsonl"
    result = run(*APP, *HOOKS, "--workers", "1", "--spare-workers", "0", env=environment(log, hook))
    assert result.returncode == 1
    assert "workers of generation 1 die at start-up (exited with status 3)" in result.stdout
    # The crash-loop halt: a few boots, backing off, then the server stops.
    assert 2 <= len(calls(log)[hook]) <= 5
    assert f"{hook} failed on purpose" in result.stdout + result.stderr


class Holder:
    """
    Hooks as methods of an object: --hooks module:object.
    """

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def post_fork(self, server, worker) -> None:
        self.seen.append(("post_fork", server, worker))

    def pre_request(self, worker, environ) -> None:
        raise RuntimeError("not now")


holder = Holder()


def test_hooks_from_an_object() -> None:
    from prefork.config import ServerConfig
    from prefork.hooks import IServer, IWorker, ServerInfo, WorkerInfo, loadHooks

    hooks = loadHooks("test_hooks:holder")
    assert "post_fork" in hooks and "pre_request" in hooks and "when_ready" not in hooks
    server, worker = ServerInfo(1, 1, ServerConfig(), 10), WorkerInfo(2, 1, ServerConfig())
    assert IServer.providedBy(server) and IWorker.providedBy(worker)
    hooks.call("post_fork", server, worker)
    hooks.call("when_ready", server)
    assert holder.seen == [("post_fork", server, worker)]
    bound = hooks.bound("pre_request", worker)
    with pytest.raises(RuntimeError):
        bound({})
    assert hooks.bound("post_request", worker) is None


def test_request_hooks_never_fail_the_request() -> None:
    from prefork.web.requesthooks import RequestHooks

    seen: list[tuple] = []

    def before(environ):
        raise RuntimeError("pre_request broke")

    hooks = RequestHooks.of(before, lambda environ, status, elapsed: seen.append((environ, status, elapsed)))
    assert hooks is not None and RequestHooks.of(None, None) is None
    started = hooks.started({"PATH_INFO": "/"})
    hooks.finished({"PATH_INFO": "/"}, "200 OK", started)
    assert seen[0][:2] == ({"PATH_INFO": "/"}, "200 OK") and 0 <= seen[0][2] < 60
