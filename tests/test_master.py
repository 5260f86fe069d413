"""
The master's decisions, driven by status messages on a fake clock.
"""

from __future__ import annotations

import signal

from twisted.internet.task import Clock

from prefork.config import ServerConfig
from prefork.master.generation import Generation
from prefork.master.supervisor import Master
from prefork.master.workers import WorkerState
from prefork.messages import ACTIVATE_SIGNAL, Event, ExitReason, Message


class RecordingGeneration(Generation):
    """
    A generation without a template: it records what it is asked to do.
    """

    def __init__(self, master: Master, number: int, clock: Clock) -> None:
        super().__init__(number, master, clock)
        self.spawned: list[bool] = []
        self.signals: list[tuple[int, int]] = []

    def spawn(self, spare: bool = False) -> None:
        super().spawn(spare)
        self.spawned.append(spare)

    def signal(self, pid: int, signum: int) -> None:
        self.signals.append((pid, signum))


def setUp(workers: int = 2, spares: int = 1) -> tuple[Master, RecordingGeneration, Clock]:
    clock = Clock()
    master = Master(ServerConfig(workers=workers, spareWorkers=spares), [], reactor=clock)
    generation = RecordingGeneration(master, 1, clock)
    master.generations.append(generation)
    master._reconcile(generation)
    return master, generation, clock


def report(master: Master, generation: Generation, event: Event, pid: int, *args: str) -> None:
    generation.messageReceived(Message(event, pid, args))


def boot(master: Master, generation: Generation, pid: int, spare: bool = False) -> None:
    flags = ("spare",) if spare else ()
    report(master, generation, Event.BORN, pid, *flags)
    report(master, generation, Event.READY, pid, "100", *flags)


def test_forks_workers_and_spares() -> None:
    master, generation, _ = setUp(workers=3, spares=1)
    assert generation.spawned == [False, False, False, True]
    for pid in (10, 11, 12):
        boot(master, generation, pid)
    assert generation in master._announced
    boot(master, generation, 13, spare=True)
    assert generation.serving() == 3 and len(generation.spares()) == 1


def test_retiring_worker_wakes_the_spare() -> None:
    master, generation, _ = setUp()
    boot(master, generation, 10)
    boot(master, generation, 11)
    boot(master, generation, 12, spare=True)
    generation.spawned.clear()
    report(master, generation, Event.DRAINING, 10, "100", "limit")
    assert generation.signals == [(12, ACTIVATE_SIGNAL)]
    assert not generation.workers[12].spare
    # A new spare is forked to take its place.
    assert generation.spawned == [True]
    report(master, generation, Event.EXITED, 10, "0")
    assert generation.spawned == [True]


def test_spare_woken_while_booting_is_activated_when_ready() -> None:
    master, generation, _ = setUp()
    boot(master, generation, 10)
    boot(master, generation, 11)
    report(master, generation, Event.BORN, 12, "spare")
    report(master, generation, Event.DRAINING, 10, "100", "limit")
    assert generation.signals == []
    report(master, generation, Event.READY, 12, "100", "spare")
    assert generation.signals == [(12, ACTIVATE_SIGNAL)]


def test_crashes_back_off() -> None:
    master, generation, clock = setUp(workers=1, spares=0)
    boot(master, generation, 10)
    killed = str(int(signal.SIGKILL))
    report(master, generation, Event.EXITED, 10, killed)
    # The first crash is replaced at once.
    assert generation.spawned == [False, False]
    boot(master, generation, 11)
    report(master, generation, Event.EXITED, 11, killed)
    assert generation.spawned == [False, False]
    clock.advance(0.49)
    assert generation.spawned == [False, False]
    clock.advance(0.01)
    assert generation.spawned == [False, False, False]
    boot(master, generation, 12)
    report(master, generation, Event.EXITED, 12, killed)
    clock.advance(0.99)
    assert len(generation.spawned) == 3
    clock.advance(0.01)
    assert len(generation.spawned) == 4
    # A clean exit ends the backoff.
    boot(master, generation, 13)
    report(master, generation, Event.DRAINING, 13, "100", "limit")
    report(master, generation, Event.EXITED, 13, "0")
    assert len(generation.spawned) == 5


def test_silent_worker_is_aborted_then_killed() -> None:
    master, generation, clock = setUp(workers=1, spares=0)
    boot(master, generation, 10)
    clock.advance(29)
    master._watchdog.check()
    assert generation.signals == []
    clock.advance(2)
    master._watchdog.check()
    assert generation.signals == [(10, signal.SIGABRT)]
    clock.advance(2)
    assert generation.signals[-1] == (10, signal.SIGKILL)
    assert generation.workers[10].reason is ExitReason.TIMEOUT


def test_ttou_drains_a_worker_not_the_spare() -> None:
    master, generation, _ = setUp(workers=2, spares=1)
    boot(master, generation, 10)
    boot(master, generation, 11)
    boot(master, generation, 12, spare=True)
    master.removeWorker()
    assert generation.signals == [(10, signal.SIGTERM)]
    assert generation.workers[10].state is WorkerState.DRAINING
    assert generation.workers[12].spare


def test_the_masters_reason_wins_over_the_workers() -> None:
    """
    A worker told to drain reports that it drains because it was told to
    stop: the reason stays the master's, to the end.
    """
    master, generation, _ = setUp(workers=2, spares=0)
    boot(master, generation, 10)
    boot(master, generation, 11)
    exits: list[str] = []
    master.watchExits(lambda generation, record, status: exits.append(record.shownReason))
    master.removeWorker()
    report(master, generation, Event.DRAINING, 10, "100", ExitReason.STOP.word)
    assert generation.workers[10].reason is ExitReason.SCALED_DOWN
    report(master, generation, Event.EXITED, 10, "0")
    assert exits == ["scaled down"]


def test_the_workers_reason_when_the_master_decided_none() -> None:
    master, generation, _ = setUp(workers=1, spares=0)
    boot(master, generation, 10)
    report(master, generation, Event.DRAINING, 10, "100", ExitReason.MEMORY.word)
    assert generation.workers[10].reason is ExitReason.MEMORY
    # A word this version does not know changes nothing.
    report(master, generation, Event.DRAINING, 10, "100", "sunspots")
    assert generation.workers[10].reason is ExitReason.MEMORY


def test_an_abort_is_the_last_word() -> None:
    master, generation, _ = setUp(workers=2, spares=0)
    boot(master, generation, 10)
    boot(master, generation, 11)
    master.removeWorker()
    generation.abort(generation.workers[10])
    generation.drain(generation.workers[10], ExitReason.SCALED_DOWN)
    report(master, generation, Event.DRAINING, 10, "100", ExitReason.STOP.word)
    assert generation.workers[10].reason is ExitReason.TIMEOUT


def test_worker_nearing_its_limit_gets_a_spare_ready() -> None:
    master, generation, _ = setUp(workers=2, spares=1)
    boot(master, generation, 10)
    boot(master, generation, 11)
    boot(master, generation, 12, spare=True)
    generation.spawned.clear()
    report(master, generation, Event.NEARING, 10)
    report(master, generation, Event.NEARING, 11)
    assert generation.spawned == [True, True]
    boot(master, generation, 13, spare=True)
    boot(master, generation, 14, spare=True)
    # Both retire together: each is succeeded by a booted spare at once.
    report(master, generation, Event.DRAINING, 10, "100", "limit")
    report(master, generation, Event.DRAINING, 11, "100", "limit")
    assert {pid for pid, _ in generation.signals} == {12, 13}
    assert generation.spawned == [True, True]
    assert len(generation.spares()) == 1
