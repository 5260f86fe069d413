"""
L{LateReactor}: the stand-in a template lends to the resource it preloads.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock

from prefork.child.latereactor import LateReactor

ROOT = Path(__file__).resolve().parent.parent


def test_before_the_fork_it_refuses_and_remembers() -> None:
    late = LateReactor()
    assert not late.used
    with pytest.raises(AttributeError, match="reactor.callLater used at import time"):
        late.callLater(1, print)
    assert late.used


def test_after_it_forwards_to_the_worker_reactor() -> None:
    late, clock = LateReactor(), Clock()
    late.become(clock)
    called: list[int] = []
    late.callLater(1, called.append, 1)
    clock.advance(1)
    assert called == [1] and not late.used
    assert IReactorTime.providedBy(late)


def test_lent_and_taken_back() -> None:
    """
    In a fresh Python: what imports the reactor gets the stand-in; taken
    back, a real reactor installs, and the stand-in forwards to it.
    """
    script = """
import sys
from prefork.child import latereactor
late = latereactor.lend()
from twisted.internet import reactor as taken
assert taken is late and latereactor.lent() is late
assert latereactor.takeBack() is late and "twisted.internet.reactor" not in sys.modules
from twisted.internet.main import installReactor
from twisted.internet.selectreactor import SelectReactor
real = SelectReactor()
installReactor(real)
late.become(real)
assert taken.seconds() > 0 and latereactor.lent() is None and latereactor.lend() is None
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr
