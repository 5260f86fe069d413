"""
The demo application that C{twistd prefork} serves when no C{--app} is
given: a page that shows which worker answered and how far along it is.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Iterable
from typing import Any

_served = 0


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    global _served
    _served += 1
    worker = environ.get("prefork.worker", {})
    rows = [
        ("worker pid", os.getpid()),
        ("requests served by this worker", _served),
        ("this worker's request limit", worker.get("limit", "?") or "none"),
        ("generation", worker.get("generation", "?")),
        ("path", environ.get("PATH_INFO", "")),
    ]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>twisted-prefork</title></head>"
        f"<body><h1>twisted-prefork</h1><table>{body}</table></body></html>\n"
    ).encode()
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(page)))])
    return [page]
