"""
The Kubernetes manifests in contrib/kubernetes/: they parse, their probes
and timeouts agree with the server's options, and the server started with
their arguments answers their probes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from prefork.master.supervisor import STOP_KILL_MARGIN
from prefork.tap import Options
from server import Server
from statusclient import probe, statusPort

CONTRIB = Path(__file__).parent.parent / "contrib" / "kubernetes"


def manifest(name: str) -> dict[str, Any]:
    """
    The one document of C{contrib/kubernetes/NAME}, parsed by PyYAML; a
    skip when PyYAML is missing (a failure with
    C{PREFORK_TESTS_REQUIRE_ALL=1}).
    """
    try:
        import yaml
    except ImportError:
        if os.environ.get("PREFORK_TESTS_REQUIRE_ALL") == "1":
            pytest.fail("PyYAML is missing (the test extra installs it)")
        pytest.skip("PyYAML is missing: the test extra installs it")
    [document] = list(yaml.safe_load_all((CONTRIB / name).read_text()))
    return document


def container() -> dict[str, Any]:
    [web] = manifest("deployment.yaml")["spec"]["template"]["spec"]["containers"]
    return web


def serverArguments() -> list[str]:
    """
    What follows C{prefork} on the container's command line.
    """
    args = container()["args"]
    return args[args.index("prefork") + 1:]


def option(name: str) -> str:
    args = serverArguments()
    return args[args.index(name) + 1]


def portNumber(description: str) -> int:
    kind, port, *_ = description.split(":")
    assert kind == "tcp"
    return int(port)


def test_the_server_accepts_the_arguments() -> None:
    web = container()
    assert [*web["command"], *web["args"][:3]] == ["twistd", "--nodaemon", "--pidfile=", "prefork"]
    options = Options()
    options.parseOptions(serverArguments())
    assert options["config"].gracefulTimeout == float(option("--graceful-timeout"))


def test_probes_on_the_status_port() -> None:
    web = container()
    ports = {port["name"]: port["containerPort"] for port in web["ports"]}
    assert ports == {"http": portNumber(option("--listen")), "status": portNumber(option("--status"))}
    readiness, liveness = web["readinessProbe"]["httpGet"], web["livenessProbe"]["httpGet"]
    assert (readiness["path"], readiness["port"]) == ("/readyz", "status")
    assert (liveness["path"], liveness["port"]) == ("/healthz", "status")


def test_grace_period_covers_the_drain() -> None:
    """
    Kubernetes kills what still runs C{terminationGracePeriodSeconds} after
    the stop began: that must leave the preStop sleep and the whole
    C{--graceful-timeout} drain time to finish, and the second after it in
    which workers abandon what is left and exit.
    """
    pod = manifest("deployment.yaml")["spec"]["template"]["spec"]
    graceful = float(option("--graceful-timeout"))
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    preStop = float(command[1])
    assert pod["terminationGracePeriodSeconds"] > graceful
    assert pod["terminationGracePeriodSeconds"] > preStop + graceful + STOP_KILL_MARGIN


def test_service_reaches_the_pods() -> None:
    deployment, service = manifest("deployment.yaml"), manifest("service.yaml")
    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    names = {port["name"] for port in container()["ports"]}
    [port] = service["spec"]["ports"]
    # The status endpoint stays off the Service.
    assert port["targetPort"] == "http" and "status" in names


def test_the_probes_answer(servers: list[Server]) -> None:
    """
    The server, started with the manifest's arguments (on loopback ports,
    with the test application), answers the probes the manifest names.
    """
    replace = {
        "--app": "testapp:application",
        "--listen": "tcp:0:interface=127.0.0.1",
        "--status": "tcp:0:interface=127.0.0.1",
        "--workers": "2",
    }
    args = serverArguments()
    for name, value in replace.items():
        args[args.index(name) + 1] = value
    server = Server(*args, listen=None)
    servers.append(server)
    server.start().serving()
    port = statusPort(server)
    web = container()
    assert probe(port, web["readinessProbe"]["httpGet"]["path"]) == (200, "ready: 2 workers accepting connections\n")
    assert probe(port, web["livenessProbe"]["httpGet"]["path"]) == (200, "ok\n")
