"""
The template's warm-up of the request path: it serves its own request in
full, and installs no reactor (which would leave the workers one epoll
instance to share).
"""

from __future__ import annotations

import subprocess
import sys

from prefork.child.warmup import warmRequestPath


def test_servesItsOwnRequest() -> None:
    response = warmRequestPath()
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.endswith(b"\r\n\r\nwarm\n")


def test_installsNoReactor() -> None:
    script = (
        "import sys, threading\n"
        "from prefork.child.warmup import warmRequestPath\n"
        "warmRequestPath()\n"
        "print('twisted.internet.reactor' in sys.modules, threading.active_count())\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "1"]
