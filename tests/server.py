"""
Running the real C{twistd prefork} for a test, and talking HTTP to it.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sysconfig
import threading
import time
from pathlib import Path

APPS = Path(__file__).parent / "apps"
#: Generous: these machines have two cores and share them.
TIMEOUT = 60.0


def twistd() -> str:
    scripts = Path(sysconfig.get_path("scripts")) / "twistd"
    return str(scripts) if scripts.exists() else shutil.which("twistd") or "twistd"


def descendants(pid: int) -> set[int]:
    """
    Every live process below C{pid}, from /proc.
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def parentPid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def waitUntil(predicate, timeout: float = TIMEOUT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Server:
    """
    One C{twistd -n prefork} process, its output collected line by line.
    """

    def __init__(
        self,
        *args: str,
        listen: str | None = "tcp:0:interface=127.0.0.1",
        cwd: Path = APPS,
        prefix: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        passFds: tuple[int, ...] = (),
    ) -> None:
        """
        @param prefix: A command that runs twistd, e.g. a superdaemon.
        @param env: The environment, instead of this process's.
        @param passFds: Descriptors the server inherits.
        """
        command = [*prefix, twistd(), "-n", "--pidfile=", "prefork"]
        if listen is not None:
            command += ["--listen", listen]
        self.command = command + list(args)
        self.cwd = cwd
        self.env = env
        self.passFds = passFds
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.seen: set[int] = set()
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    def start(self) -> Server:
        self.process = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=self.env,
            pass_fds=self.passFds,
        )
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            with self._changed:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines.append("<EOF>")
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def waitFor(self, pattern: str, timeout: float = TIMEOUT, after: int = 0) -> re.Match[str]:
        """
        Wait for a line of output matching C{pattern}, from line C{after} on.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            index = after
            while True:
                while index < len(self.lines):
                    match = regex.search(self.lines[index])
                    if match:
                        return match
                    index += 1
                if self.lines and self.lines[-1] == "<EOF>":
                    raise AssertionError(f"server exited without printing {pattern!r}:\n{self.output}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out waiting for {pattern!r}:\n{self.output}")
                self._changed.wait(remaining)

    def serving(self) -> Server:
        """
        Wait until the first generation serves; learn the port.
        """
        match = self.waitFor(r"Listening on (https?://[\d.]+:(\d+)/|unix:)")
        if match.group(2):
            self.port = int(match.group(2))
        self.waitFor(r"Generation 1 serving")
        self.recordProcesses()
        return self

    def recordProcesses(self) -> None:
        self.seen |= descendants(self.pid)

    def connection(self, timeout: float = TIMEOUT) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def get(self, path: str = "/", method: str = "GET", body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        connection = self.connection()
        try:
            connection.request(method, path, body=body)
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def internalErrors(self) -> list[str]:
        """
        Lines of output that tell of a bug in the server rather than in the
        application: an unhandled error, or a Python error of the kind
        only code gets wrong.
        """
        bug = re.compile(r"Unhandled Error|builtins\.(AttributeError|TypeError|IndexError|KeyError|NameError)")
        return [line for line in self.lines if bug.search(line)]

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float = TIMEOUT) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, timeout: float = TIMEOUT) -> int | None:
        """
        Stop the server with TERM and check that it left no process behind;
        kill, by pid, whatever it did leave.
        """
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.recordProcesses()
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        leftovers = set()
        deadline = time.monotonic() + 10
        for pid in self.seen:
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if alive(pid):
                leftovers.add(pid)
                os.kill(pid, signal.SIGKILL)
        assert not leftovers, f"processes left behind: {sorted(leftovers)}"
        return self.process.returncode


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = TIMEOUT) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)




def _serverClosed(sock: socket.socket) -> bool:
    """
    Whether the server has closed an idle connection (it reads as EOF).
    """
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def fetch(connection: http.client.HTTPConnection, path: str = "/") -> tuple[int, bytes]:
    """
    One GET over a keep-alive connection, as a well-behaved HTTP client does
    it (RFC 9112, 9.3.1): a reused connection that the server has closed is
    replaced first, and a GET that got no byte of answer on a reused
    connection is sent once more on a new one.

    The tests that call a change of the worker set "lossless" with this
    client mean lossless for such a client: one that retries an idempotent
    request when a keep-alive connection it reuses is closed or reset under
    it, as a worker that retires or drains may do between two requests.  A
    request on a new connection is never retried: see
    L{superdaemon.NewConnectionLoad} for loads that allow no retry at all.
    """
    reused = connection.sock is not None
    if reused and _serverClosed(connection.sock):
        connection.close()
        reused = False
    try:
        connection.request("GET", path)
        response = connection.getresponse()
    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
        connection.close()
        if not reused:
            raise
        connection.request("GET", path)
        response = connection.getresponse()
    body = response.read()
    if response.will_close:
        connection.close()
    return response.status, body


class Load:
    """
    Clients sending GETs over keep-alive connections from threads, until
    stopped or until each has sent C{limit} requests.  They retry as
    L{fetch} does: no failure under this load means lossless for a client
    that retries idempotent requests on a reset keep-alive connection.
    """

    def __init__(self, server: Server, clients: int = 4, path: str = "/", limit: int = 5000) -> None:
        self.server = server
        self.path = path
        self.limit = limit
        self.answers: list[tuple[int, bytes]] = []
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self) -> None:
        connection = self.server.connection(timeout=30)
        for _ in range(self.limit):
            if self._stop.is_set():
                break
            try:
                self.answers.append(fetch(connection, self.path))
            except (OSError, http.client.HTTPException) as e:
                self.failures.append(e)
                connection.close()
        connection.close()

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(TIMEOUT)

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def finish(self) -> None:
        """
        Wait until every client has sent all its requests.
        """
        for thread in self._threads:
            thread.join(TIMEOUT * 5)

    def waitForAnswers(self, count: int) -> None:
        waitUntil(lambda: len(self.answers) >= count or self.failures, what=f"{count} answers")
