"""
Memory: --max-rss retires a worker that grew too big.
"""

from __future__ import annotations

from server import alive, waitUntil
from statusclient import STATUS, status

APP = ("--app", "testapp:application")


def test_worker_past_max_rss_is_replaced(serve) -> None:
    server = serve(*APP, *STATUS, "--workers", "2", "--max-rss", "100")
    before = status(server)
    assert all(w["rss_bytes"] < 100 << 20 for w in before["workers"])
    code, headers, _ = server.get("/allocate?mb=150")
    assert code == 200
    big = int(headers["x-pid"])
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


def test_bad_max_rss(servers) -> None:
    from server import Server

    server = Server(*APP, "--max-rss", "lots")
    servers.append(server)
    server.start()
    assert server.wait() != 0
    assert "--max-rss must be a number of at least 0, not 'lots'" in server.output
