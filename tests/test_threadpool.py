"""
Tests for L{prefork.web.threadpool.RequestThreads}: real threads.
"""

from __future__ import annotations

import threading

import pytest
from twisted.logger import LogEvent, globalLogPublisher

from prefork.web.threadpool import RequestThreads

TIMEOUT = 30


def test_runs_calls_in_its_threads() -> None:
    pool = RequestThreads(3, "test-pool")
    names: list[str] = []
    done = threading.Event()
    pool.start()
    try:
        for _ in range(30):
            pool.callInThread(lambda: names.append(threading.current_thread().name))
        pool.callInThread(done.set)
        assert done.wait(TIMEOUT)
    finally:
        pool.stop()
    assert len(names) == 30
    assert set(names) <= {"test-pool-0", "test-pool-1", "test-pool-2"}


def test_passes_arguments() -> None:
    pool = RequestThreads(1, "test-pool")
    got: list[tuple[int, str]] = []
    pool.start()
    pool.callInThread(lambda n, word: got.append((n, word)), 1, word="one")
    pool.stop()
    assert got == [(1, "one")]


def test_calls_run_at_once_in_as_many_threads() -> None:
    """
    Each thread takes a call while the others are busy: N blocking calls
    run side by side.
    """
    pool = RequestThreads(4, "test-pool")
    barrier = threading.Barrier(4, timeout=TIMEOUT)
    passed: list[int] = []
    pool.start()
    for index in range(4):
        pool.callInThread(lambda index=index: (barrier.wait(), passed.append(index)))
    pool.stop()
    assert sorted(passed) == [0, 1, 2, 3]


def test_stop_finishes_what_was_queued() -> None:
    pool = RequestThreads(1, "test-pool")
    gate = threading.Event()
    ran: list[int] = []
    pool.callInThread(gate.wait, TIMEOUT)
    for index in range(5):
        pool.callInThread(ran.append, index)
    pool.start()
    gate.set()
    pool.stop()
    assert ran == [0, 1, 2, 3, 4]
    assert not pool.started
    assert not [t for t in threading.enumerate() if t.name.startswith("test-pool")]


def test_a_failing_call_is_logged_and_its_thread_goes_on() -> None:
    failures: list[LogEvent] = []

    def observe(event: LogEvent) -> None:
        if event.get("log_failure") is not None:
            failures.append(event)

    pool = RequestThreads(1, "test-pool")
    ran: list[str] = []
    globalLogPublisher.addObserver(observe)
    try:
        pool.start()
        pool.callInThread(lambda: 1 / 0)
        pool.callInThread(ran.append, "after")
        pool.stop()
    finally:
        globalLogPublisher.removeObserver(observe)
    assert ran == ["after"]
    assert len(failures) == 1 and failures[0]["log_failure"].check(ZeroDivisionError)
    assert failures[0]["name"] == "test-pool"


def test_needs_a_thread() -> None:
    with pytest.raises(ValueError, match="at least one thread, not 0"):
        RequestThreads(0, "test-pool")


class _Exchange:
    """
    Stands for a worker's exchange: a call of its bound method serves the
    request of its environ.
    """

    def __init__(self, release: threading.Event, method: str, path: str) -> None:
        self.release = release
        self.environ = {"REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path}
        self.running = threading.Event()

    def run(self) -> None:
        self.running.set()
        self.release.wait(TIMEOUT)


def test_stop_abandons_what_outlives_its_timeout() -> None:
    """
    A call still running when the timeout is up is abandoned, named by its
    request, and so is every call queued behind it; stop() returns in time.
    """
    pool = RequestThreads(1, "test-pool")
    release = threading.Event()
    blocking = _Exchange(release, "GET", "/block\n")
    pool.start()
    pool.callInThread(blocking.run)
    assert blocking.running.wait(TIMEOUT)
    pool.callInThread(_Exchange(release, "POST", "/queued").run)
    try:
        abandoned = pool.stop(timeout=0.2)
    finally:
        release.set()
    assert abandoned == ["GET /block\\x0a (in test-pool-0)", "POST /queued (not started)"]


def test_stop_abandons_nothing_that_finishes_in_time() -> None:
    pool = RequestThreads(2, "test-pool")
    pool.start()
    done: list[int] = []
    pool.callInThread(done.append, 1)
    assert pool.stop(timeout=TIMEOUT) == []
    assert done == [1]
