"""
The real nginx in front of the server, through contrib/nginx/prefork.conf,
proxying to a UNIX socket.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from nginxprocess import mainConfig, recipe, runningNginx
from server import Server
from superdaemon import SUPERAPP, NewConnectionLoad, freePort, getJSON
from tools import requires

pytestmark = requires("nginx")

RECIPE = Path(__file__).parent.parent / "contrib" / "nginx" / "prefork.conf"

HTTP = """
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    include {root}/site.conf;
}}
"""


def nginxConfig(root: Path, port: int, socketPath: str) -> Path:
    """
    The recipe, listening on a loopback port and proxying to C{socketPath},
    included in a main configuration that keeps nginx's files in C{root}.
    """
    (root / "site.conf").write_text(recipe(RECIPE, port, socketPath))
    config = root / "nginx.conf"
    # Run as root, nginx's workers would become "nobody", who cannot reach
    # the test's private directory; as anyone else, "user" is ignored.
    config.write_text(mainConfig(root, HTTP.format(root=root)))
    return config


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """
    nginx on a loopback port, in front of the UNIX socket whose path it
    yields with the port; stopped, with its workers, by its pid.
    """
    root, port, socketPath = tmp_path / "nginx", freePort(), str(tmp_path / "app.sock")
    root.mkdir()
    with runningNginx(root, nginxConfig(root, port, socketPath)):
        yield port, socketPath


def test_nginx_to_unix_socket(servers: list[Server], nginx: tuple[int, str]) -> None:
    port, socketPath = nginx
    server = Server(*SUPERAPP, listen=f"unix:{socketPath}")
    servers.append(server)
    server.start().serving()
    answer = getJSON(port, headers={"X-Forwarded-For": "192.0.2.7"})
    request = answer["request"]
    # A UNIX socket has no port: the environ says so in the value README.rst
    # documents.  Its peer is trusted, so the client is the rightmost
    # untrusted address in X-Forwarded-For (nginx, at 127.0.0.1, is trusted
    # by default).
    assert (request["REMOTE_ADDR"], request["SERVER_PORT"]) == ("192.0.2.7", "80")
    assert request["SERVER_NAME"] == "127.0.0.1"
    assert request["HTTP_X_FORWARDED_FOR"] == "192.0.2.7, 127.0.0.1"


def test_nginx_across_reload(servers: list[Server], nginx: tuple[int, str]) -> None:
    """
    Behind nginx, a graceful reload of the server loses no request.
    """
    port, socketPath = nginx
    server = Server(*SUPERAPP, listen=f"unix:{socketPath}")
    servers.append(server)
    server.start().serving()
    with NewConnectionLoad(port) as load:
        load.waitForAnswers(50)
        mark = len(server.lines)
        server.signal(signal.SIGHUP)
        server.waitFor("Generation 2 serving", after=mark)
        server.waitFor("Generation 1 has ended", after=mark)
        load.waitForAnswers(len(load.answers) + 50)
    assert load.failures == []
    assert all(status == 200 for status, _ in load.answers)
