"""
Under systemd: sockets passed by the real C{systemd-socket-activate}, and the
sd_notify sequence told to a real datagram socket bound as C{NOTIFY_SOCKET}.
"""

from __future__ import annotations

import itertools
import os
import pwd
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from fakestate import FakeGeneration, FakeServer, worker
from prefork.master.sdnotify import HEARTBEAT_GRACE, SystemdWatchdog, watchdogInterval
from prefork.master.workers import WorkerRecord
from server import APPS, TIMEOUT, Server, alive, descendants, twistd, waitUntil
from superdaemon import SUPERAPP, deployApp, freePort, getJSON
from tools import program, requires

ACTIVATE = "systemd-socket-activate"
#: A test that runs the server under systemd-socket-activate.
activated = requires(ACTIVATE)


def activate(servers: list[Server], listen: list[str], *args: str, names: str | None = None) -> Server:
    """
    Run the server under systemd-socket-activate listening on C{listen}; it
    starts twistd at the first connection.
    """
    prefix = [program(ACTIVATE)] + [f"--listen={address}" for address in listen]
    if names is not None:
        prefix.append(f"--fdname={names}")
    server = Server(*SUPERAPP, *args, listen=None, prefix=tuple(prefix))
    servers.append(server)
    server.start()
    for fd, address in enumerate(listen, 3):
        server.waitFor(rf"Listening on {address} as {fd}\.")
    return server


@activated
def test_socket_activation(servers: list[Server]) -> None:
    port = freePort()
    server = activate(servers, [f"127.0.0.1:{port}"], names="web")
    # This first connection makes systemd-socket-activate start twistd.
    answer = getJSON(port)
    server.waitFor(rf"Listening on http://127\.0\.0\.1:{port}/ \(from systemd fd 3 'web'\)")
    assert answer["leaked"] == {}
    assert int(answer["pid"]) not in (server.pid, 0)
    server.waitFor("Generation 1 serving")
    server.recordProcesses()
    assert server.stop() == 0


@activated
def test_two_sockets(servers: list[Server], tmp_path: Path) -> None:
    port, path = freePort(), str(tmp_path / "app.sock")
    server = activate(servers, [f"127.0.0.1:{port}", path], names="web:local")
    assert getJSON(port)["version"] == "1"
    assert getJSON(path)["version"] == "1"
    server.waitFor(rf"Listening on http://127\.0\.0\.1:{port}/ \(from systemd fd 3 'web'\)")
    server.waitFor(rf"Listening on unix:{path} \(from systemd fd 4 'local'\)")
    server.waitFor("Generation 1 serving")
    server.recordProcesses()
    assert server.stop() == 0
    # The socket is systemd's: the server left its path in place.
    assert os.path.exists(path)


@activated
@pytest.mark.parametrize("description", ["systemd:domain=INET:index=0", "systemd:domain=UNIX:index=1"])
def test_systemd_endpoint_string(servers: list[Server], tmp_path: Path, description: str) -> None:
    """
    C{--listen systemd:...} picks one of the passed sockets, though systemd
    passed no names and Twisted's endpoints module emptied the environment.
    """
    port, path = freePort(), str(tmp_path / "app.sock")
    server = activate(servers, [f"127.0.0.1:{port}", path], "--listen", description)
    # A connection to either socket starts the server.
    socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    chosen, other = (port, path) if "INET" in description else (path, port)
    assert getJSON(chosen)["version"] == "1"
    server.waitFor("Generation 1 serving")
    listening = [line for line in server.lines if "Listening on" in line and "(from systemd" in line]
    assert len(listening) == 1 and str(chosen) in listening[0] and str(other) not in listening[0]
    server.recordProcesses()
    assert server.stop() == 0


def test_systemd_endpoint_without_systemd() -> None:
    result = subprocess.run(
        [twistd(), "-n", "--pidfile=", "prefork", "--listen", "systemd:domain=INET:index=0"],
        cwd=APPS, capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        (
            "twistd prefork: --listen systemd passed no socket for systemd:domain=INET:index=0 (it passed 0)"
            " (see twistd prefork --help)"
        )
    ]


class NotifySocket:
    """
    A datagram socket bound where C{NOTIFY_SOCKET} points, as systemd's.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind("\0" + address[1:] if address.startswith("@") else address)

    def receive(self, timeout: float = TIMEOUT) -> dict[str, str]:
        self.socket.settimeout(timeout)
        data = self.socket.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.splitlines())

    def pending(self) -> bool:
        self.socket.settimeout(0)
        try:
            self.socket.recv(4096, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        return True

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def notify(tmp_path: Path):
    sink = NotifySocket(str(tmp_path / "notify"))
    yield sink
    sink.close()


def monotonicMicroseconds() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def test_notify_sequence(servers: list[Server], notify: NotifySocket, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    env = dict(os.environ, NOTIFY_SOCKET=notify.address, SUPERAPP_GATE=str(gate))
    server = Server(*SUPERAPP, env=env)
    servers.append(server)
    server.start()
    # The application is being imported: nothing can serve yet, and
    # systemd must not have heard otherwise.
    waitUntil(lambda: Path(f"{gate}.importing").exists(), what="the import to begin")
    assert not notify.pending()
    gate.touch()
    ready = notify.receive()
    assert ready["READY"] == "1"
    assert ready["STATUS"] == "Serving with 2 workers (generation 1)"
    assert "MAINPID" not in ready
    server.serving()
    answer = getJSON(server.port)
    assert answer["leaked"] == {}

    server.signal(signal.SIGHUP)
    reloading = notify.receive()
    assert reloading["RELOADING"] == "1"
    assert abs(int(reloading["MONOTONIC_USEC"]) - monotonicMicroseconds()) < TIMEOUT * 1e6
    ready = notify.receive()
    assert (ready["READY"], ready["STATUS"]) == ("1", "Serving with 2 workers (generation 2)")
    server.waitFor("Generation 2 serving")
    assert getJSON(server.port)["version"] == "1"

    server.signal(signal.SIGTERM)
    assert notify.receive()["STOPPING"] == "1"
    assert server.wait() == 0


def test_notify_failed_reload(servers: list[Server], tmp_path: Path) -> None:
    """
    A reload whose new code cannot be imported still ends with READY=1, so
    that systemd does not wait for it; over an abstract socket name.
    """
    notify = NotifySocket(f"@prefork-test-{os.getpid()}-{time.monotonic_ns()}")
    try:
        deployApp(tmp_path, "1")
        server = Server(*SUPERAPP, cwd=tmp_path, env=dict(os.environ, NOTIFY_SOCKET=notify.address))
        servers.append(server)
        server.start().serving()
        assert notify.receive()["READY"] == "1"
        (tmp_path / "superapp.py").write_text("this is not Python\n")
        server.signal(signal.SIGHUP)
        assert notify.receive()["RELOADING"] == "1"
        ready = notify.receive()
        assert (ready["READY"], ready["STATUS"]) == ("1", "Serving with 2 workers (generation 1)")
        assert getJSON(server.port)["version"] == "1"
    finally:
        notify.close()


def test_notify_main_pid_when_daemonized(notify: NotifySocket, tmp_path: Path) -> None:
    """
    Without C{-n}, twistd forks into the background: systemd is told the
    pid that now serves.
    """
    pidfile, port = tmp_path / "twistd.pid", freePort()
    command = [
        twistd(), f"--pidfile={pidfile}", f"--logfile={tmp_path / 'twistd.log'}", "prefork",
        *SUPERAPP, "--listen", f"tcp:{port}:interface=127.0.0.1",
    ]
    env = dict(os.environ, NOTIFY_SOCKET=notify.address)
    subprocess.run(command, cwd=APPS, env=env, check=True, timeout=TIMEOUT)
    waitUntil(pidfile.exists, what="the pid file")
    daemon = int(pidfile.read_text())
    seen: set[int] = set()
    try:
        ready = notify.receive()
        seen = descendants(daemon)
        assert (ready["READY"], ready["MAINPID"]) == ("1", str(daemon))
        assert getJSON(port)["version"] == "1"
    finally:
        os.kill(daemon, signal.SIGTERM)
        for pid in [daemon, *seen]:
            waitUntil(lambda pid=pid: not alive(pid), what=f"process {pid} to exit")


def watchdogPings(notify: NotifySocket, count: int) -> list[float]:
    """
    When each of the next C{count} C{WATCHDOG=1} arrived; other
    notifications are passed over.
    """
    times: list[float] = []
    while len(times) < count:
        if notify.receive().get("WATCHDOG") == "1":
            times.append(time.monotonic())
    return times


def test_watchdog(servers: list[Server], notify: NotifySocket) -> None:
    """
    With C{WATCHDOG_USEC} and C{WATCHDOG_PID} set as systemd sets them, the
    master sends C{WATCHDOG=1} every half interval while its workers beat,
    and stops when they all fall silent (stopped with SIGSTOP here), so
    that systemd would restart the service.
    """
    env = dict(os.environ, NOTIFY_SOCKET=notify.address, WATCHDOG_USEC="1000000")
    # systemd sets WATCHDOG_PID to the pid it starts: the shell's, which
    # becomes twistd's.
    setPid = ("sh", "-c", 'export WATCHDOG_PID=$$; exec "$0" "$@"')
    server = Server(*SUPERAPP, "--timeout", "0", env=env, prefix=setPid)
    servers.append(server)
    server.start().serving()
    assert getJSON(server.port)["leaked"] == {}
    pings = watchdogPings(notify, 5)
    gaps = sorted(b - a for a, b in itertools.pairwise(pings))
    # Every half second: well within the interval, whatever the load.
    assert 0.2 < gaps[len(gaps) // 2] < 1.0, gaps
    workers = descendants(server.pid)
    try:
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        server.waitFor(r"Not feeding systemd's watchdog: no worker heard from for \d+ s")
        while notify.pending():
            notify.receive()
        # Nothing for twice the interval: systemd would restart the service.
        with pytest.raises(TimeoutError):
            notify.receive(timeout=2.0)
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    watchdogPings(notify, 1)
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "me"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert watchdogInterval(environ, pid=4242) == expected


class FakeNotifier:
    def __init__(self) -> None:
        self.sent: list[dict[str, str | int]] = []

    def notify(self, **state: str | int) -> bool:
        self.sent.append(state)
        return True


def test_watchdog_needs_a_heartbeat() -> None:
    """
    No worker heard from within the interval (or L{HEARTBEAT_GRACE}, if
    longer): no C{WATCHDOG=1}.  Workers still booting do not count.
    """
    clock, notifier = Clock(), FakeNotifier()
    clock.advance(1000)
    booting = WorkerRecord(11, born=clock.seconds(), lastHeard=clock.seconds())
    generation = FakeGeneration(1, records=[booting])
    watchdog = SystemdWatchdog(notifier, FakeServer(generations=[generation]), 10.0, clock)
    watchdog.startService()
    clock.pump([5] * 4)
    assert notifier.sent == []
    # A worker boots and beats once a second for 12 seconds, then stops.
    beating = worker(12, born=clock.seconds())
    generation.records.append(beating)
    for _ in range(12):
        clock.advance(1)
        beating.heard(clock.seconds())
    assert notifier.sent == [{"WATCHDOG": 1}] * 2
    clock.pump([5, 5])
    assert notifier.sent == [{"WATCHDOG": 1}] * 4
    # Past the interval with no beat: not a word.
    clock.pump([5] * 4)
    assert notifier.sent == [{"WATCHDOG": 1}] * 4
    beating.heard(clock.seconds())
    clock.advance(5)
    watchdog.stopService()
    assert notifier.sent == [{"WATCHDOG": 1}] * 5


def test_watchdog_short_interval() -> None:
    """
    Workers beat once a second: with a shorter interval, one heard from
    within L{HEARTBEAT_GRACE} seconds still counts.
    """
    clock, notifier = Clock(), FakeNotifier()
    clock.advance(1000)
    beating = worker(12, born=clock.seconds())
    watchdog = SystemdWatchdog(notifier, FakeServer(generations=[FakeGeneration(1, records=[beating])]), 0.5, clock)
    watchdog.startService()
    clock.pump([0.25] * int(HEARTBEAT_GRACE * 4))
    sent = len(notifier.sent)
    assert sent == HEARTBEAT_GRACE * 4 + 1
    clock.pump([0.25] * 4)
    watchdog.stopService()
    assert len(notifier.sent) == sent


CONTRIB = Path(__file__).parent.parent / "contrib" / "systemd"


def unitSettings(path: Path) -> dict[str, list[str]]:
    """
    Every C{Key=value} of a unit file, a key's values in order.
    """
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def localUnit(path: Path, directory: Path) -> Path:
    """
    A copy of the unit at C{path} in C{directory}, running this checkout's
    twistd on the test application, as the current user.
    """
    text = (
        path.read_text()
        .replace("/srv/myproject/venv/bin/twistd", twistd())
        .replace("WorkingDirectory=/srv/myproject", f"WorkingDirectory={APPS}")
        .replace("myproject.wsgi:application", "superapp:application")
        .replace("--workers 8", "--workers 2")
        .replace("/run/prefork/prefork.sock", str(directory / "prefork.sock"))
        .replace("www-data", pwd.getpwuid(os.getuid()).pw_name)
    )
    copy = directory / path.name
    copy.write_text(text)
    return copy


@requires("systemd-analyze")
def test_units_verify(tmp_path: Path) -> None:
    units = [localUnit(CONTRIB / name, tmp_path) for name in ("prefork.socket", "prefork.service")]
    result = subprocess.run(
        [program("systemd-analyze"), "verify", "--man=no", *map(str, units)],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_units_timeouts_agree() -> None:
    service = unitSettings(CONTRIB / "prefork.service")
    command = service["ExecStart"][0].split()
    graceful = float(command[command.index("--graceful-timeout") + 1])
    assert service["KillMode"] == ["mixed"]
    assert graceful < float(service["TimeoutStopSec"][0]) <= graceful + 15


def test_units_watchdog() -> None:
    """
    The watchdog gives the master time to replace a stuck worker itself
    (C{--timeout}, 30 s unless given) before systemd restarts everything.
    """
    service = unitSettings(CONTRIB / "prefork.service")
    command = service["ExecStart"][0].split()
    timeout = float(command[command.index("--timeout") + 1]) if "--timeout" in command else 30.0
    assert float(service["WatchdogSec"][0]) >= timeout
    assert service["Restart"] == ["on-failure"]


@requires(ACTIVATE, "kill")
def test_units_run(servers: list[Server], notify: NotifySocket, tmp_path: Path) -> None:
    """
    What systemd does with the units, done by systemd-socket-activate and
    the test: start on the socket, reload with ExecReload, stop with
    KillSignal, each step told through sd_notify.
    """
    socketUnit = unitSettings(localUnit(CONTRIB / "prefork.socket", tmp_path))
    service = unitSettings(localUnit(CONTRIB / "prefork.service", tmp_path))
    assert service["Type"] == ["notify"]
    path, name = socketUnit["ListenStream"][0], socketUnit["FileDescriptorName"][0]
    command = service["ExecStart"][0].split()
    server = Server(
        listen=None, cwd=Path(service["WorkingDirectory"][0]), env=dict(os.environ, NOTIFY_SOCKET=notify.address)
    )
    # systemd-socket-activate passes on only the variables it is told to.
    server.command = [program(ACTIVATE), f"--listen={path}", f"--fdname={name}", "--setenv=NOTIFY_SOCKET", *command]
    servers.append(server)
    server.start()
    server.waitFor(rf"Listening on {path} as 3\.")
    socket.socket(socket.AF_UNIX).connect(path)
    assert notify.receive()["READY"] == "1"
    server.waitFor(rf"Listening on unix:{path} \(from systemd fd 3 'http'\)")
    assert getJSON(path)["version"] == "1"

    reload = service["ExecReload"][0].replace("$MAINPID", str(server.pid)).split()
    subprocess.run(reload, check=True, timeout=TIMEOUT)
    assert notify.receive()["RELOADING"] == "1"
    assert notify.receive()["STATUS"] == "Serving with 2 workers (generation 2)"
    server.recordProcesses()

    server.signal(signal.Signals[service["KillSignal"][0]])
    assert notify.receive()["STOPPING"] == "1"
    assert server.wait(float(service["TimeoutStopSec"][0])) == 0
