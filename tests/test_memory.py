"""
Memory: --max-rss and --max-uss retire a worker that grew too big; the
status page shows each worker's RSS, USS and PSS.
"""

from __future__ import annotations

import pytest

from server import Server, alive, waitUntil
from statusclient import STATUS, metrics, status

APP = ("--app", "testapp:application")


@pytest.mark.parametrize("option", ["--max-rss", "--max-uss"])
def test_worker_past_memory_limit_is_replaced(serve, option: str) -> None:
    server = serve(*APP, *STATUS, "--workers", "2", option, "100")
    before = status(server)
    assert all(w["rss_bytes"] < 100 << 20 for w in before["workers"])
    code, headers, _ = server.get("/allocate?mb=150")
    assert code == 200
    big = int(headers["x-pid"])
    server.waitFor(rf"more than {option} 100 MB: retiring")
    server.waitFor(rf"Worker {big} exited after 1 requests \(memory\)")
    waitUntil(lambda: not alive(big), what=f"worker {big} to exit")
    after = status(server)
    assert after["restarts"]["memory"] == 1
    assert after["restarts"]["crash"] == 0
    assert big not in {w["pid"] for w in after["workers"]}
    accepting = lambda: sum(status(server)["workers_by_state"][s] for s in ("idle", "busy"))  # noqa: E731
    waitUntil(lambda: accepting() == 2, what="a replacement worker")
    # The worker that stayed small keeps serving.
    for _ in range(6):
        assert server.get("/")[0] == 200


def test_memory_shown_per_worker(serve) -> None:
    """
    A worker shares the pages of the preloaded template: its RSS counts
    them, its USS does not, its PSS counts its share.  Memory it allocates
    itself shows in all three.
    """
    server = serve(*APP, *STATUS, "--workers", "2", "--spare-workers", "0")
    waitUntil(lambda: all(w["uss_bytes"] for w in status(server)["workers"]), what="every worker to report its memory")
    for worker in status(server)["workers"]:
        assert 0 < worker["uss_bytes"] < worker["pss_bytes"] < worker["rss_bytes"]
    code, headers, _ = server.get("/allocate?mb=50")
    assert code == 200
    big = int(headers["x-pid"])

    def grown() -> bool:
        worker = next(w for w in status(server)["workers"] if w["pid"] == big)
        return worker["uss_bytes"] > 50 << 20

    waitUntil(grown, what=f"worker {big} to report 50 MB more")
    samples = metrics(server)
    live = {dict(labels)["worker"] for labels in samples["prefork_worker_requests_total"]}
    for name in ("prefork_worker_unique_memory_bytes", "prefork_worker_proportional_memory_bytes"):
        assert {dict(labels)["worker"] for labels in samples[name]} == live
    unique = {dict(labels)["worker"]: value for labels, value in samples["prefork_worker_unique_memory_bytes"].items()}
    assert unique[str(big)] > 50 << 20


@pytest.mark.parametrize("option", ["--max-rss", "--max-uss"])
def test_bad_memory_limit(servers, option: str) -> None:
    server = Server(*APP, option, "lots")
    servers.append(server)
    server.start()
    assert server.wait() != 0
    assert f"{option} must be a number of at least 0, not 'lots'" in server.output
    assert "Traceback" not in server.output
