"""
Server hooks that record every call, one JSON line each, in the file named
by HOOKS_LOG; HOOKS_FAIL names hooks (comma-separated) that raise instead.
"""

import json
import os
import threading

from prefork.hooks import IServer, IWorker


def _record(hook, server=None, worker=None, **details):
    if server is not None:
        assert IServer.providedBy(server), server
        details.update(master=server.pid, generation=server.generation, workers=server.workers)
    if worker is not None:
        assert IWorker.providedBy(worker), worker
        details.update(worker=worker.pid, served=worker.served, limit=worker.limit, reason=worker.reason)
    line = json.dumps({"hook": hook, "pid": os.getpid(), "thread": threading.current_thread().name, **details})
    fd = os.open(os.environ["HOOKS_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode() + b"\n")
    finally:
        os.close(fd)
    if hook in os.environ.get("HOOKS_FAIL", "").split(","):
        raise RuntimeError(f"{hook} failed on purpose")


def on_starting(server):
    _record("on_starting", server)


def when_ready(server):
    _record("when_ready", server)


def on_reload(server):
    _record("on_reload", server)


def on_exit(server):
    _record("on_exit", server)


def child_exit(server, worker):
    _record("child_exit", server, worker, status=worker.status)


def pre_fork(server, worker):
    _record("pre_fork", server, worker)


def post_fork(server, worker):
    _record("post_fork", server, worker)


def post_worker_init(worker):
    _record("post_worker_init", None, worker)


def worker_int(worker):
    _record("worker_int", None, worker)


def worker_abort(worker):
    _record("worker_abort", None, worker)


def worker_exit(server, worker):
    _record("worker_exit", server, worker)


def pre_request(worker, environ):
    _record("pre_request", None, worker, path=environ["PATH_INFO"])


def post_request(worker, environ, status, elapsed):
    _record("post_request", None, worker, path=environ["PATH_INFO"], status=status, elapsed=elapsed)


#: Not a hook: a hooks module may hold anything else (a gunicorn.conf.py's
#: settings, say).
workers = 4
