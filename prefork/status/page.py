"""
The status page the master serves with C{--status ENDPOINT}:

  - C{/}: a scoreboard, one self-contained HTML page (no scripts, styles
    and the request rate's chart inline) that reloads itself every two
    seconds;
  - C{/status.json}: the same data as JSON;
  - C{/metrics}: the same data for Prometheus;
  - C{/healthz} and C{/readyz}: the probes (see L{prefork.status.probes}).

It runs in the master's reactor beside the supervision; every response is
built from one L{ServerStatus} snapshot, a walk over the worker tables.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from html import escape
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.address import UNIXAddress
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from prefork.master.workers import RESTART_REASONS
from prefork.status import metrics
from prefork.status.chart import describeSpan, rateChart
from prefork.status.collector import (
    HISTORY_POINTS,
    HISTORY_STEP,
    WORKER_STATES,
    ServerStatus,
    StatusCollector,
    WorkerStatus,
)
from prefork.status.probes import HealthCheck, ReadinessCheck

#: How often the page reloads itself, in seconds.
REFRESH = 2

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f4f6fa; }
header { background: #1d2330; color: #fff; padding: 12px 24px; }
header h1 { font-size: 18px; margin: 0; } header span { color: #a9b3c8; }
header p.listening { margin: 4px 0 0; font-size: 13px; color: #a9b3c8; }
main { padding: 16px 24px; }
.totals { display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 16px; }
.card { background: #fff; border-radius: 6px; padding: 8px 14px; box-shadow: 0 1px 2px #0002; }
.card b { display: block; font-size: 20px; } .card small { color: #667; }
.card.list b { font-size: 14px; font-weight: 500; line-height: 27px; }
.card.list em { font-style: normal; font-weight: 700; }
.running { color: #8a5a00; }
table { border-collapse: collapse; width: 100%; background: #fff; box-shadow: 0 1px 2px #0002; }
th, td { padding: 6px 10px; text-align: right; border-bottom: 1px solid #e3e7ef; white-space: nowrap; }
th { background: #e9edf5; font-weight: 600; } td.path, th.path { text-align: left; }
td.path { font-family: ui-monospace, monospace; max-width: 28em; overflow: hidden; text-overflow: ellipsis; }
.state { border-radius: 9px; padding: 1px 9px; font-weight: 600; font-size: 12px; }
.booting { background: #dbe7ff; color: #1c4fb8; } .spare { background: #e6e8ee; color: #4a5266; }
.idle { background: #dff3e4; color: #1c7a3a; }
.busy { background: #fff0c2; color: #8a5a00; } .draining { background: #ece2f8; color: #6b2fa8; }
.bar { display: inline-block; width: 60px; height: 6px; background: #e3e7ef; border-radius: 3px; margin-left: 6px; }
.bar i { display: block; height: 6px; background: #4f7be0; border-radius: 3px; }
.history { margin-bottom: 16px; } .history h2 { font-size: 14px; font-weight: 600; margin: 0 0 4px; }
.history h2 small { font-weight: 400; color: #667; }
svg.chart { display: block; width: 100%; height: auto; font: 12px system-ui, sans-serif; fill: #667; }
"""


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size else "-"


def _milliseconds(microseconds: int) -> str:
    return f"{microseconds / 1000:.1f} ms"


def _card(value: object, label: str) -> str:
    return f'<div class="card"><b>{escape(str(value))}</b><small>{escape(label)}</small></div>'


def _listCard(counts: dict[str, int], label: str) -> str:
    items = " · ".join(f"<em>{n}</em> {escape(name)}" for name, n in counts.items())
    return f'<div class="card list"><b>{items}</b><small>{escape(label)}</small></div>'


def _row(worker: WorkerStatus) -> str:
    served = str(worker.served)
    if worker.limit:
        fill = min(100, 100 * worker.served // worker.limit)
        served += f' / {worker.limit}<span class="bar"><i style="width:{fill}%"></i></span>'
    cells = [
        str(worker.pid),
        str(worker.generation),
        f'<span class="state {worker.state}">{worker.state}</span>',
        served,
        str(worker.inFlight),
        _megabytes(worker.rss),
        _megabytes(worker.uss),
        _megabytes(worker.pss),
        _duration(worker.age),
    ]
    path = escape(worker.lastPath or "-")
    if worker.state == "busy":
        duration = '<span class="running">running</span>'
    else:
        duration = _milliseconds(worker.lastDuration) if worker.lastPath else "-"
    return (
        f'<tr class="worker" data-pid="{worker.pid}" data-state="{worker.state}">'
        + "".join(f"<td>{cell}</td>" for cell in cells)
        + f'<td class="path" title="{path}">{path}</td><td>{duration}</td></tr>'
    )


def _history(status: ServerStatus) -> str:
    facts = [f"{status.history[-1]:.1f}/s now", f"peak {max(status.history):.1f}/s"] if status.history else []
    facts.append(f"one point per {HISTORY_STEP} s, kept {describeSpan(HISTORY_STEP * HISTORY_POINTS)}")
    return (
        f'<section class="card history"><h2>requests per second <small>{" · ".join(facts)}</small></h2>'
        f"{rateChart(status.history, HISTORY_STEP)}</section>"
    )


def renderPage(status: ServerStatus) -> str:
    """
    The scoreboard of C{status}, as one HTML document.
    """
    byState = status.byState()
    cards = [
        _card(_duration(status.uptime), "uptime"),
        _card(status.generation, "generation"),
        _card(f"{status.requestsPerSecond:.1f}", "requests/s (10 s)"),
        _card(status.requestsTotal, "requests"),
        _listCard({s: byState[s] for s in WORKER_STATES}, f"workers (want {status.workersWanted})"),
        _listCard({r: status.restarts.get(r, 0) for r in RESTART_REASONS}, "restarts"),
        _listCard({str(code): n for code, n in status.refusals.items()}, "refused by the server, by status"),
    ]
    headings = ["pid", "gen", "state", "served", "in flight", "RSS", "USS", "PSS", "age", "last request", "took"]
    head = "".join(f'<th class="path">{h}</th>' if h == "last request" else f"<th>{h}</th>" for h in headings)
    rows = "\n".join(_row(worker) for worker in status.workers)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH}">
<title>prefork: {escape(status.app)}</title>
<style>{_STYLE}</style></head>
<body><header><h1>twisted-prefork <span>{escape(status.app)} · master pid {status.pid}</span></h1>
<p class="listening">{escape(" · ".join(status.listening))}</p></header>
<main><div class="totals">{"".join(cards)}</div>
{_history(status)}
<table id="workers"><thead><tr>{head}</tr></thead>
<tbody>
{rows}
</tbody></table></main></body></html>
"""


class _StatusResource(Resource):
    def __init__(self, collector: StatusCollector) -> None:
        super().__init__()
        self.collector = collector

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"cache-control", b"no-store")
        content, body = self.renderStatus(self.collector.snapshot())
        request.setHeader(b"content-type", content)
        return body.encode("utf-8")

    def renderStatus(self, status: ServerStatus) -> tuple[bytes, str]:
        raise NotImplementedError()


class ScoreboardPage(_StatusResource):
    def renderStatus(self, status: ServerStatus) -> tuple[bytes, str]:
        return b"text/html; charset=utf-8", renderPage(status)


class StatusJSON(_StatusResource):
    def renderStatus(self, status: ServerStatus) -> tuple[bytes, str]:
        return b"application/json", json.dumps(status.toJSON(), indent=1) + "\n"


class Metrics(_StatusResource):
    def renderStatus(self, status: ServerStatus) -> tuple[bytes, str]:
        return metrics.CONTENT_TYPE, metrics.render(status)


class StatusRoot(Resource):
    """
    C{/}, C{/status.json}, C{/metrics}, C{/healthz} and C{/readyz};
    anything else is not found.
    """

    def __init__(self, collector: StatusCollector) -> None:
        super().__init__()
        self.page = ScoreboardPage(collector)
        self.putChild(b"status.json", StatusJSON(collector))
        self.putChild(b"metrics", Metrics(collector))
        self.putChild(b"healthz", HealthCheck())
        self.putChild(b"readyz", ReadinessCheck(collector.state))

    def getChild(self, path: bytes, request: Request) -> Any:
        if path == b"" and not request.postpath:
            return self.page
        return super().getChild(path, request)


class StatusSite(Site):
    noisy = False

    def log(self, request: http.Request) -> None:
        # Scrapes every few seconds would drown the master's log.
        pass


def describeAddress(address: Any) -> str:
    if isinstance(address, UNIXAddress):
        name = address.name.decode("utf-8", "replace") if isinstance(address.name, bytes) else address.name
        return f"unix:{name}"
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"http://{host}:{address.port}/"


class StatusService(MultiService):
    """
    The status page on a server endpoint, and the collector it shows.

    It listens before twistd drops privileges and, like the master's own
    sockets, fails the start with one clear line when it cannot.  When the
    server stops, it goes on answering until C{until()} fires, so that
    C{/readyz} says the server is stopping while the workers drain.
    """

    _log = Logger()

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        description: str,
        collector: StatusCollector,
        until: Callable[[], Deferred[None]] | None = None,
    ) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.description = description
        self.collector = collector
        self.until = until
        collector.setServiceParent(self)
        self._port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        failures: list[Failure] = []
        listening = self.endpoint.listen(StatusSite(StatusRoot(self.collector)))
        listening.addCallbacks(self._listening, failures.append)
        if failures:
            raise SystemExit(f"twistd prefork: --status {self.description!r}: {failures[0].getErrorMessage()}")

    def _listening(self, port: IListeningPort) -> None:
        self._port = port
        self._log.info("Status page on {address}", address=describeAddress(port.getHost()))

    def stopService(self) -> Deferred[Any]:
        stopped = super().stopService()
        drained: Deferred[Any] = succeed(None) if self.until is None else self.until()
        drained.addCallback(lambda _: self._stopListening())
        return DeferredList([maybeDeferred(lambda: stopped), drained])

    def _stopListening(self) -> Deferred[None] | None:
        if self._port is None:
            return None
        port, self._port = self._port, None
        return port.stopListening()
