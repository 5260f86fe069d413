"""
The pipes between the master, the templates and the workers.

The master talks to a template over the template's standard input, one
command a line; the first, L{TemplateSetup}, carries the configuration, which
never goes on a command line (C{ps} shows those to every user).  Templates
and workers talk back over one shared status pipe: each message is a single
line written with a single C{write(2)} of less than C{PIPE_BUF} bytes, so
that lines from concurrent writers never interleave.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from enum import Enum

from prefork.config import ServerConfig

#: The descriptor on which templates and workers find the status pipe.
STATUS_FD = 3
#: The descriptor of the first listening socket; the others follow in order.
FIRST_LISTEN_FD = 4

#: A worker's exit status when it ended as asked: retired, stopped, drained.
EXIT_DONE = 0
#: A worker's (or a template's) exit status when it could not start serving.
EXIT_BOOT_FAILED = 3

#: The signal that tells a spare worker to start accepting.
ACTIVATE_SIGNAL = signal.SIGUSR2

# POSIX promises atomic pipe writes up to PIPE_BUF, which is at least 512
# bytes; Linux gives 4096.  Keep well inside it.
_MAX_LINE = 3072


class Event(Enum):
    """
    What a status line reports.
    """

    BORN = "born"  # template: forked worker PID, and "spare" for a spare
    READY = "ready"  # worker: booted, with its request limit, and "spare"
    ACTIVE = "active"  # spare worker: now accepting
    NEARING = "nearing"  # worker: close to its limit, wants a successor ready
    BEAT = "beat"  # worker: alive, with its WorkerReport
    DRAINING = "draining"  # worker: stopped accepting, with served and ExitReason.word
    EXITED = "exited"  # template: worker PID exited, with its wait status
    FATAL = "fatal"  # template or worker: cannot serve, with one line why
    SOURCE = "source"  # template or worker: a source file of the app (--reload)


class ExitReason(Enum):
    """
    Why a worker leaves.  The value is the text users see (the log, the
    hooks' C{worker.reason}, the docs); on the status pipe the reason
    travels as its name in lower case, one word, which for every reason a
    worker sends is also the word of the versions before this enum (a
    master and a template of different versions meet during a reload after
    an upgrade).

    The worker decides most reasons itself and reports them as it begins
    to drain; the master decides L{SCALED_DOWN} and L{TIMEOUT}, and its
    decision wins over what the worker then reports.
    """

    LIMIT = "limit"  # served its request limit (--max-requests)
    MEMORY = "memory"  # used more than --max-rss or --max-uss
    STOP = "stop"  # told to stop (TERM): the server or its generation stops
    QUICK = "quick"  # told to stop quickly (INT, QUIT)
    ORPHANED = "orphaned"  # its master or template is gone
    SCALED_DOWN = "scaled down"  # the master: one worker fewer (TTOU)
    TIMEOUT = "timeout"  # the master: no heartbeat for --timeout seconds

    @property
    def word(self) -> str:
        """
        The reason on the status pipe.
        """
        return self.name.lower()

    @classmethod
    def fromWord(cls, word: str) -> ExitReason | None:
        """
        The reason a status line names, or L{None} for a word this version
        does not know.
        """
        try:
            return cls[word.upper()]
        except KeyError:
            return None


class Command(Enum):
    """
    What the master asks of a template.
    """

    CONFIGURE = "configure"  # the first command: generation, sockets, configuration
    SPAWN = "spawn"  # fork one more worker
    SPAWN_SPARE = "spawn-spare"  # fork a spare: booted, not accepting until woken
    STOP = "stop"  # with a signal number: fork no more, close the sockets,
    # signal every worker, exit once they have gone


@dataclass(frozen=True)
class TemplateSetup:
    """
    What a template needs before it can start: its generation, how many
    listening sockets it finds from L{FIRST_LISTEN_FD} on, and the
    configuration.  It travels as the first command, one line of ASCII
    (the configuration is JSON, which escapes everything else).
    """

    generation: int
    sockets: int
    config: ServerConfig

    def encode(self) -> bytes:
        words = [Command.CONFIGURE.value, str(self.generation), str(self.sockets), self.config.toJSON()]
        return " ".join(words).encode("ascii") + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> TemplateSetup:
        """
        @raise ValueError: The line is not a setup.
        """
        words = line.decode("ascii", "replace").rstrip("\n").split(" ", 3)
        if len(words) != 4 or words[0] != Command.CONFIGURE.value:
            raise ValueError(f"the first line is not {Command.CONFIGURE.value!r} with its three arguments")
        _, generation, sockets, config = words
        try:
            return cls(int(generation), int(sockets), ServerConfig.fromJSON(config))
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a configuration: {e}") from None

    @classmethod
    def read(cls, fd: int) -> TemplateSetup:
        """
        Read the setup from the first line of C{fd}, and not a byte more:
        what follows is the master's next command.

        @raise ValueError: C{fd} ended first, or the line is not a setup.
        """
        line = bytearray()
        while not line.endswith(b"\n"):
            byte = os.read(fd, 1)
            if not byte:
                raise ValueError("the input ended before the configuration did")
            line += byte
        return cls.decode(bytes(line))

    def commandLine(self, executable: str) -> list[str]:
        """
        How a new Python is started as this template: the module, then the
        words C{ps} shows in place of a title, which say nothing of the
        configuration but the application.
        """
        return [executable, "-m", "prefork.child.template", "gen", str(self.generation), f"app={self.config.served}"]


@dataclass(frozen=True)
class Message:
    """
    One line on the status pipe: an event about process C{pid}.
    """

    event: Event
    pid: int
    args: tuple[str, ...] = ()

    def encode(self) -> bytes:
        words = [self.event.value, str(self.pid), *self.args]
        line = " ".join(words).replace("\n", " ").encode("utf-8", "replace")
        return line[:_MAX_LINE] + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> Message:
        """
        Parse one line (without its newline).  A L{FATAL} or L{SOURCE}
        message keeps the rest of its line as one argument.

        @raise ValueError: The line is not a message.
        """
        text = line.decode("utf-8", "replace")
        whole = text.startswith(("fatal ", "source "))
        event, pid, *rest = text.split(" ", 2 if whole else -1)
        message = cls(Event(event), int(pid), tuple(rest))
        if message.event is Event.BEAT:
            message.report()
        return message

    def report(self) -> WorkerReport:
        """
        The report a L{Event.BEAT} carries.

        @raise ValueError: It carries none.
        """
        return WorkerReport.fromArgs(self.args)


@dataclass(frozen=True)
class WorkerReport:
    """
    What a worker tells of itself in a L{Event.BEAT} line: at least once a
    second, and soon after each change between busy and idle.

    @ivar served: Requests admitted so far.
    @ivar inFlight: Requests admitted and not yet answered.
    @ivar rss: Resident memory, in bytes.
    @ivar lastDuration: How long the last answered request took, in
        microseconds.
    @ivar lastPath: The path of the last request admitted (C{""}: none yet).
    @ivar uss: Unique memory (private pages), in bytes.
    @ivar pss: Proportional memory (shared pages split between sharers), in
        bytes.
    @ivar refusals: How many requests the server refused itself (never
        reaching the application), by status, since the worker started.
    """

    served: int = 0
    inFlight: int = 0
    rss: int = 0
    lastDuration: int = 0
    lastPath: str = ""
    uss: int = 0
    pss: int = 0
    refusals: dict[int, int] = field(default_factory=dict, hash=False)

    def toArgs(self) -> tuple[str, ...]:
        # The path is one word (see printablePath).  The fields added after
        # it come last, so that a master and a template of different
        # versions (during a reload after an upgrade) still read each
        # other's beats: what one side does not know is left at 0.
        return (
            str(self.served), str(self.inFlight), str(self.rss), str(self.lastDuration), self.lastPath or "-",
            str(self.uss), str(self.pss), _refusalsWord(self.refusals),
        )

    @classmethod
    def fromArgs(cls, args: tuple[str, ...]) -> WorkerReport:
        """
        A beat with the count of requests alone is a report too.

        @raise ValueError: The arguments are not a report.
        """
        if not args:
            raise ValueError("a beat without its count of requests")
        defaults = ("0", "0", "0", "0", "-", "0", "0", "-")
        served, inFlight, rss, lastDuration, lastPath, uss, pss, refusals = (*args[:8], *defaults[len(args):])
        return cls(
            int(served), int(inFlight), int(rss), int(lastDuration),
            "" if lastPath == "-" else lastPath, int(uss), int(pss), _readRefusals(refusals),
        )


#: The most statuses a beat carries refusals for.  The server refuses with
#: a handful; the bound keeps the longest beat (its path escaped, every
#: number at its widest) well inside L{_MAX_LINE}, so never cut.
MAX_REFUSAL_STATUSES = 40


def _refusalsWord(refusals: dict[int, int]) -> str:
    """
    Refusals by status as one word: C{400:3,431:1}, or C{-} for none.
    """
    counted = sorted((code, n) for code, n in refusals.items() if n > 0)[:MAX_REFUSAL_STATUSES]
    return ",".join(f"{code}:{n}" for code, n in counted) or "-"


def _readRefusals(word: str) -> dict[int, int]:
    # The counts are for the status page, never for supervision: what this
    # version cannot read (a later version's syntax) counts nothing rather
    # than costing the beat that says the worker is alive.
    refusals: dict[int, int] = {}
    for entry in word.split(","):
        code, _, count = entry.partition(":")
        if len(code) == 3 and (code + count).isascii() and code.isdigit() and count.isdigit():
            refusals[int(code)] = int(count)
    return refusals


def printablePath(path: bytes, limit: int = 200) -> str:
    """
    A request path as one word for a status line: no whitespace, no control
    characters, at most C{limit} characters.
    """
    text = path[:limit].decode("ascii", "backslashreplace")
    return "".join(c if c.isprintable() and not c.isspace() else f"\\x{ord(c):02x}" for c in text)


def send(message: Message, fd: int = STATUS_FD) -> bool:
    """
    Write C{message} to the status pipe.

    @return: C{False} if nobody reads the pipe any more: the master is gone.
    """
    try:
        os.write(fd, message.encode())
    except (BrokenPipeError, OSError):
        return False
    return True
