"""
--reload: an edit to the application's source starts a new generation.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from prefork.master import reload
from prefork.master.reload import SourceWatcher

APPLICATION = '''
from helper import WORD

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [WORD.encode()]
'''


def test_an_edit_starts_a_new_generation(serve, tmp_path: Path) -> None:
    (tmp_path / "editable.py").write_text(APPLICATION)
    helper = tmp_path / "helper.py"
    helper.write_text('WORD = "one"\n')
    server = serve("--app", "editable:application", "--pythonpath", str(tmp_path), "--reload", "--workers", "1")
    server.waitFor(f"Watching {helper} for changes")
    assert server.get("/")[2] == b"one"

    # A burst of saves is one new generation.
    for word in ("tw", "two", "two!"):
        helper.write_text(f'WORD = "{word}"\n')
    server.waitFor("Generation 2 serving")
    server.waitFor("Generation 1 has ended")
    assert server.get("/")[2] == b"two!"
    assert "Generation 3 starting" not in server.output

    # A broken edit: the old generation keeps serving.
    mark = len(server.lines)
    helper.write_text("WORD = 1 / 0\n")
    server.waitFor("Generation 3 failed, generation 2 keeps serving", after=mark)
    server.waitFor("ZeroDivisionError", after=mark)
    assert server.get("/")[2] == b"two!"

    # Fixed: served at once.
    helper.write_text('WORD = "three"\n')
    server.waitFor("Generation 4 serving")
    server.waitFor("Generation 2 has ended")
    assert server.get("/")[2] == b"three"


@pytest.mark.parametrize("preload", [(), ("--no-preload",)], ids=["preloaded", "imported-by-workers"])
def test_extra_files_are_watched(serve, tmp_path: Path, preload: tuple[str, ...]) -> None:
    settings = tmp_path / "settings.ini"
    settings.write_text("a\n")
    server = serve(
        "--app", "testapp:application", "--reload", "--reload-extra-file", str(settings), "--workers", "1", *preload
    )
    server.waitFor(f"Watching {settings} for changes")
    server.waitFor("Watching .*testapp.py for changes")
    settings.write_text("b\n")
    server.waitFor("Generation 2 serving")


def test_poll_sees_changes_once_a_second(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "app.py"
    path.write_text("1")
    changes: list[None] = []
    watcher = SourceWatcher(lambda: changes.append(None), [str(path)], reactor=clock, useINotify=False)
    watcher.startService()
    clock.advance(reload.POLL_INTERVAL)
    assert changes == []
    path.write_text("22")
    clock.advance(reload.POLL_INTERVAL)
    clock.advance(reload.DEBOUNCE)
    assert changes == [None]
    path.unlink()
    clock.advance(reload.POLL_INTERVAL)
    clock.advance(reload.DEBOUNCE)
    assert changes == [None, None]
    # Watching the same file twice watches it once.
    watcher.watch(str(path))
    assert list(watcher.files) == [os.path.abspath(path)]
    watcher.stopService()


def test_a_burst_of_changes_is_one_reload(tmp_path: Path) -> None:
    clock = Clock()
    changes: list[None] = []
    watcher = SourceWatcher(lambda: changes.append(None), [str(tmp_path / "app.py")], reactor=clock, useINotify=False)
    for _ in range(5):
        watcher._changedNow(str(tmp_path / "app.py"))
        clock.advance(reload.DEBOUNCE / 2)
    assert changes == []
    clock.advance(reload.DEBOUNCE)
    assert changes == [None]


def test_a_source_path_travels_whole() -> None:
    from prefork.messages import Event, Message

    message = Message(Event.SOURCE, 12, ("/src/my project/app.py",))
    assert Message.decode(message.encode().rstrip(b"\n")) == message
