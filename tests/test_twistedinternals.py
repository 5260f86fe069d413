"""
The private names of Twisted's that the project relies on still have the
shape it relies on, in the installed Twisted; and no module but
L{prefork.twistedinternals} reaches for one.

A failure names the name, what the project uses it for, and the Twisted
release installed: that is the release that changed it.  The same goes for
the functions of Twisted's that the project's code copies or relies on the
inside of (L{prefork.twistedinternals.MIRRORS}): a source that differs from
every release checked names the code to re-check.
"""

from __future__ import annotations

import configparser
import functools
import importlib.util
import inspect
import io
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import twisted
from incremental import Version
from twisted.internet.abstract import FileDescriptor
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor
from twisted.logger import FileLogObserver, LogPublisher

from prefork import __version__, twistedinternals
from prefork.child.accept import FairTCPPort, FairUNIXPort
from prefork.twistedinternals import (
    MIRRORS,
    PRIVATE_NAMES,
    Mirror,
    PrivateName,
    UnsupportedTwisted,
    adoptListeningPort,
    checkTwisted,
    detachSpareDescriptor,
    observersOf,
    reserveSpareDescriptor,
    sourceDigest,
    spareDescriptorReserve,
    upstreamFunction,
)

ROOT = Path(__file__).resolve().parent.parent
#: A private Twisted name, as written where it is used.
PRIVATE_USE = re.compile(
    r"_ChunkedTransferDecoder|_ishexdigits|_execChild|_reservedFD|_fromListeningDescriptor|_maybeChooseTransferDecoder"
    r"|_respondToBadRequestAndDisconnect|_send100Continue|_HTTPChannel__|twisted\.[a-z_.]*\._[a-z]"
    r"|_IdentityTransferDecoder|_MalformedChunkedDataError|_chunkExtChars|_observers|_trySpawnInsteadOfFork"
)


def changed(private: PrivateName, what: str) -> str:
    return (
        f"Twisted {twisted.__version__} changed {private.qualifiedName}, which twisted-prefork uses for "
        f"{private.use} (its shape since Twisted {private.since}): {what}"
    )


def mirrorChanged(mirror: Mirror) -> str | None:
    """
    Why the installed Twisted's source of what C{mirror} mirrors is not one
    checked, or L{None} if it is.
    """
    installed = twisted.__version__
    try:
        digest = sourceDigest(upstreamFunction(mirror))
    except (ImportError, AttributeError, OSError, TypeError) as e:
        return f"Twisted {installed} has no source of {mirror.upstream} ({e}): re-check {mirror.where}"
    expected = mirror.digests.get(installed)
    if digest == expected or (expected is None and digest in mirror.digests.values()):
        return None
    return (
        f"Twisted {installed}'s {mirror.upstream} differs from its source in Twisted "
        f"{', '.join(mirror.digests) or '(none)'}; {mirror.where} mirrors it (written from Twisted "
        f"{mirror.takenFrom}): re-check {mirror.recheck}; then add {installed!r}: {digest!r} to its digests "
        "in prefork/twistedinternals.py"
    )


@functools.cache
def _reactor() -> EPollReactor:
    return EPollReactor()


def liveOwner(private: PrivateName) -> object:
    """
    An instance of C{private}'s owner in the state where the project reads
    the attribute.
    """
    if private.owner is LogPublisher:
        return LogPublisher()
    if private.owner is EPollReactor:
        return _reactor()
    if private.name == "_fileDescriptor":
        return spareDescriptorReserve()
    if private.owner is FileDescriptor:
        return FileDescriptor()
    if private.owner is FileLogObserver:
        return FileLogObserver(io.StringIO(), str)
    assert private.name == "_preexistingSocket", private
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(f"\0prefork-test-{id(listening)}")
        listening.listen()
        port = adoptListeningPort(FairUNIXPort, MemoryReactor(), listening.fileno(), socket.AF_UNIX, Factory())
    port.startListening()
    port.socket.close()
    return port


@pytest.mark.parametrize("private", PRIVATE_NAMES, ids=lambda p: p.qualifiedName)
def test_private_name_has_its_shape(private: PrivateName) -> None:
    owner = liveOwner(private) if private.onInstance else private.owner
    assert hasattr(owner, private.name), changed(private, "it is gone")
    if private.parameters is not None:
        found = getattr(owner, private.name)
        assert callable(found), changed(private, "it is no longer callable")
        names = tuple(p for p in inspect.signature(found).parameters if p not in ("self", "cls"))
        assert names == private.parameters, changed(private, f"its parameters are {names}, not {private.parameters}")


def test_every_private_name_is_documented() -> None:
    for private in PRIVATE_NAMES:
        assert private.name.startswith("_") and private.use and re.fullmatch(r"\d+\.\d+\.\d+", private.since), private


@pytest.mark.parametrize("mirror", MIRRORS, ids=lambda m: m.upstream)
def test_mirrored_source_is_one_checked(mirror: Mirror) -> None:
    assert mirrorChanged(mirror) is None, mirrorChanged(mirror)


def test_every_mirror_is_documented() -> None:
    for mirror in MIRRORS:
        path, _, name = mirror.where.partition(": ")
        assert f"def {name.rpartition('.')[2]}(" in (ROOT / path).read_text(), mirror
        assert mirror.recheck and mirror.takenFrom in mirror.digests, mirror
        assert all(re.fullmatch(r"\d+\.\d+\.\d+", version) for version in mirror.digests), mirror
        assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in mirror.digests.values()), mirror


def test_a_changed_mirrored_source_names_what_to_recheck() -> None:
    mirror = MIRRORS[0]
    digest = sourceDigest(upstreamFunction(mirror))
    changedMirror = Mirror(mirror.upstream, mirror.where, "the loop", "24.11.0", {"24.11.0": "0" * 64})
    assert mirrorChanged(changedMirror) == (
        f"Twisted {twisted.__version__}'s twisted.internet.tcp:Port.doRead differs from its source in Twisted "
        "24.11.0; prefork/child/accept.py: _FewAccepts.doRead mirrors it (written from Twisted 24.11.0): "
        "re-check the loop; "
        f"then add {twisted.__version__!r}: {digest!r} to its digests in prefork/twistedinternals.py"
    )
    # A release listed must have its own digest, not another's.
    listed = {"1.0.0": digest, twisted.__version__: "0" * 64}
    assert mirrorChanged(Mirror(mirror.upstream, mirror.where, "the loop", "1.0.0", listed)) is not None
    # One not listed passes on the source of any release checked.
    assert mirrorChanged(Mirror(mirror.upstream, mirror.where, "", "1.0.0", {"1.0.0": digest})) is None
    gone = Mirror("twisted.internet.tcp:Port.gone", mirror.where, "", "1.0.0", {})
    assert "has no source of twisted.internet.tcp:Port.gone" in (mirrorChanged(gone) or "")


def test_source_digest_ignores_layout(tmp_path: Path) -> None:
    """
    Indentation and line breaks do not change a digest; code does.
    """

    def function(source: str, name: str) -> Any:
        path = tmp_path / f"{name}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.f if hasattr(module, "f") else module.C.f

    first = function("def f(a):\n    return a + 1\n", "one")
    assert sourceDigest(function("class C:\n    def f(a):\n        return a  +\t1\n", "two")) == sourceDigest(first)
    assert sourceDigest(function("def f(a):\n    return a + 2\n", "three")) != sourceDigest(first)


def test_spare_descriptor() -> None:
    reserveSpareDescriptor()
    held: Any = detachSpareDescriptor()
    assert held is not None and held.fileno() >= 0
    held.close()
    reserveSpareDescriptor()


def test_observers_of() -> None:
    first, second = (lambda event: None), (lambda event: None)
    assert observersOf(LogPublisher(first, second)) == [first, second]


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_UNIX])
def test_adopt_listening_port(family: socket.AddressFamily, tmp_path: Path) -> None:
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.bind(("127.0.0.1", 0) if family == socket.AF_INET else str(tmp_path / "s"))
    listening.listen()
    listening.setblocking(False)
    portClass = FairTCPPort if family == socket.AF_INET else FairUNIXPort
    port = adoptListeningPort(portClass, MemoryReactor(), listening.fileno(), family, Factory())
    assert type(port) is portClass
    port.startListening()
    assert port.getHost().port if family == socket.AF_INET else port.getHost().name
    port.socket.close()
    listening.close()


def test_supported_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    assert twistedinternals.isSupported(), f"Twisted {twisted.__version__} is older than the declared minimum"
    assert not twistedinternals.isSupported(Version("Twisted", 24, 10, 0))
    assert twistedinternals.isSupported(Version("Twisted", 24, 11, 0))
    checkTwisted()
    monkeypatch.setattr(twisted, "version", Version("Twisted", 23, 10, 0))
    monkeypatch.setattr(twisted, "__version__", "23.10.0")
    with pytest.raises(UnsupportedTwisted) as raised:
        checkTwisted()
    assert str(raised.value) == f"twisted-prefork {__version__} needs Twisted >= 24.11.0 (found 23.10.0)"


def test_a_lost_private_name_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = PrivateName(Factory, "_gone", "nothing", "10.0.0")
    monkeypatch.setattr(twistedinternals, "PRIVATE_NAMES", (*PRIVATE_NAMES, gone))
    with pytest.raises(UnsupportedTwisted) as raised:
        checkTwisted()
    assert str(raised.value) == (
        f"twisted-prefork {__version__} does not support Twisted {twisted.__version__}: "
        "it has no twisted.internet.protocol.Factory._gone"
    )


def test_setup_declares_the_minimum() -> None:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    requirements = parser["options"]["install_requires"].split("\n")
    declared = [r.split(">=")[1].strip() for r in requirements if r.strip().lower().startswith("twisted")]
    assert declared == [twistedinternals.minimumVersion()]


def test_no_private_name_outside_the_fence() -> None:
    users = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "prefork").rglob("*.py")
        if PRIVATE_USE.search(path.read_text()) and path.name != "twistedinternals.py"
    )
    assert users == [], "use Twisted's private names through prefork/twistedinternals.py only"
