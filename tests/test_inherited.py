"""
Unit tests of the inherited sockets' environment protocols and of the
sd_notify messages, on real sockets in this process.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefork.master import inherited
from prefork.master.inherited import InheritedSocketError
from prefork.master.sdnotify import NotifyingObserver, SystemdNotifier


@pytest.fixture
def listening(tmp_path: Path) -> Iterator[dict[str, socket.socket]]:
    """
    A listening TCP, TCP6 and UNIX socket.
    """
    sockets = {"tcp": socket.socket(), "unix": socket.socket(socket.AF_UNIX)}
    sockets["tcp"].bind(("127.0.0.1", 0))
    sockets["unix"].bind(str(tmp_path / "s"))
    if socket.has_ipv6:
        sockets["tcp6"] = socket.socket(socket.AF_INET6)
        sockets["tcp6"].bind(("::1", 0))
    for skt in sockets.values():
        skt.listen()
    yield sockets
    for skt in sockets.values():
        skt.close()


def dup(skt: socket.socket) -> str:
    """
    A new descriptor for C{skt}, as a superdaemon would pass it.
    """
    return str(os.dup(skt.fileno()))


def close(found: list) -> None:
    for listening in found:
        listening.socket.close()


def test_server_starter_keys(listening: dict[str, socket.socket], tmp_path: Path) -> None:
    port = listening["tcp"].getsockname()[1]
    entries = [
        f"{port}={dup(listening['tcp'])}",
        f"127.0.0.1:{port}={dup(listening['tcp'])}",
        f"{tmp_path / 's'}={dup(listening['unix'])}",
    ]
    if "tcp6" in listening:
        entries.append(f"[::1]:{listening['tcp6'].getsockname()[1]}={dup(listening['tcp6'])}")
    found = inherited.fromServerStarter({"SERVER_STARTER_PORT": ";".join(entries)})
    try:
        families = [listening.family for listening in found]
        assert families[:3] == [socket.AF_INET, socket.AF_INET, socket.AF_UNIX]
        assert families[3:] in ([], [socket.AF_INET6])
        assert all(listening.unlinkPath is None for listening in found)
        assert all(not listening.socket.getblocking() for listening in found)
        assert found[1].describe() == f"http://127.0.0.1:{port}/ (from Server::Starter 127.0.0.1:{port})"
    finally:
        close(found)


@pytest.mark.parametrize("value", ["8080", "8080=x", "host:port=4", "=5", "[::1=4"])
def test_server_starter_malformed(value: str) -> None:
    with pytest.raises(InheritedSocketError, match="SERVER_STARTER_PORT"):
        inherited.fromServerStarter({"SERVER_STARTER_PORT": value})


def test_not_a_listening_socket(tmp_path: Path) -> None:
    read, write = os.pipe()
    idle = socket.socket()
    try:
        with pytest.raises(InheritedSocketError, match=f"descriptor {read} is not a socket"):
            inherited.fromEinhorn({"EINHORN_FDS": str(read)})
        with pytest.raises(InheritedSocketError, match="not a listening stream socket"):
            inherited.fromEinhorn({"EINHORN_FD_COUNT": "1", "EINHORN_FD_0": str(idle.fileno())})
        # The socket refused is left to its owner.
        assert idle.fileno() >= 0 and os.fstat(idle.fileno())
    finally:
        os.close(read)
        os.close(write)
        idle.close()


def test_einhorn(listening: dict[str, socket.socket]) -> None:
    environ = {"EINHORN_FD_COUNT": "2", "EINHORN_FD_0": dup(listening["tcp"]), "EINHORN_FD_1": dup(listening["unix"])}
    found = inherited.fromEinhorn(environ)
    try:
        assert [listening.family for listening in found] == [socket.AF_INET, socket.AF_UNIX]
        assert inherited.underEinhorn(environ)
    finally:
        close(found)
    with pytest.raises(InheritedSocketError, match="EINHORN_FD_1 is not set"):
        inherited.fromEinhorn({"EINHORN_FD_COUNT": "2", "EINHORN_FD_0": "3"})
    assert not inherited.underEinhorn({})


def test_systemd_descriptors() -> None:
    mine = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "3", "LISTEN_FDNAMES": "web:admin"}
    assert inherited.systemdDescriptors(mine) == [(3, "web"), (4, "admin"), (5, "")]
    assert inherited.systemdDescriptors(dict(mine, LISTEN_PID="1")) == []
    assert inherited.systemdDescriptors({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1"}) == [(3, "")]


def test_start_environment(tmp_path: Path) -> None:
    environ = tmp_path / "environ"
    environ.write_bytes(b"LISTEN_PID=12\0LISTEN_FDS=2\0ODD\0EMPTY=\0")
    assert inherited.startEnvironment(str(environ)) == {"LISTEN_PID": "12", "LISTEN_FDS": "2", "EMPTY": ""}
    assert inherited.startEnvironment(str(tmp_path / "missing")) == {}


@pytest.mark.parametrize(
    "description",
    [
        "systemd:index=0",
        "systemd:domain=IPX:index=0",
        "systemd:domain=INET",
        "systemd:domain=INET:index=0:name=a",
        "systemd:domain=INET:port=3",
    ],
)
def test_systemd_endpoint_malformed(description: str) -> None:
    with pytest.raises(InheritedSocketError, match="systemd:domain=INET|INET6|UNIX:index=N"):
        inherited.systemdEndpoint(description, {})


def test_systemd_endpoint_by_name(listening: dict[str, socket.socket]) -> None:
    # systemd's descriptors start at 3: put the UNIX socket there for the
    # test, then restore whatever was there.
    try:
        saved: int | None = os.dup(3)
    except OSError:
        saved = None
    os.dup2(listening["unix"].fileno(), 3)
    try:
        mine = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "web"}
        with pytest.raises(InheritedSocketError, match="is AF_UNIX"):
            inherited.systemdEndpoint("systemd:domain=INET:name=web", mine)
        found = inherited.systemdEndpoint("systemd:domain=UNIX:name=web", mine)
        assert (found.origin, found.unlinkPath) == ("systemd fd 3 'web'", None)
        found.socket.detach()
        with pytest.raises(InheritedSocketError, match="no socket"):
            inherited.systemdEndpoint("systemd:domain=UNIX:index=1", mine)
    finally:
        if saved is None:
            os.close(3)
        else:
            os.dup2(saved, 3)
            os.close(saved)


class FakeGeneration:
    def __init__(self, number: int, count: int) -> None:
        self.number = number
        self.count = count

    def serving(self) -> int:
        return self.count


def receive(sink: socket.socket) -> dict[str, str]:
    return dict(line.split("=", 1) for line in sink.recv(4096).decode().splitlines())


def test_notifier_abstract_name() -> None:
    name = f"prefork-unit-{os.getpid()}"
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind("\0" + name)
    notifier = SystemdNotifier.fromEnvironment({"NOTIFY_SOCKET": "@" + name})
    assert notifier is not None
    try:
        observer = NotifyingObserver(notifier, startPid=os.getpid() + 1)
        observer.serving(FakeGeneration(1, 1))  # type: ignore[arg-type]
        assert receive(sink) == {
            "READY": "1", "MAINPID": str(os.getpid()), "STATUS": "Serving with 1 worker (generation 1)"
        }
        observer.reloading()
        assert receive(sink)["RELOADING"] == "1"
        observer.serving(FakeGeneration(2, 3))  # type: ignore[arg-type]
        assert receive(sink) == {"READY": "1", "STATUS": "Serving with 3 workers (generation 2)"}
        observer.stopping()
        assert receive(sink)["STOPPING"] == "1"
    finally:
        notifier.close()
        sink.close()


def test_notifier_gone(tmp_path: Path) -> None:
    """
    A notification systemd cannot take is logged; the server goes on.
    """
    assert SystemdNotifier.fromEnvironment({}) is None
    assert SystemdNotifier.fromEnvironment({"NOTIFY_SOCKET": "vsock:2:3"}) is None
    notifier = SystemdNotifier(str(tmp_path / "nobody"))
    assert notifier.notify(READY=1) is False
    notifier.close()
