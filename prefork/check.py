"""
C{--check-config}: import the application and the hooks as a template would,
in a child process, so that a deploy can learn before it starts the server
that they load.

L{checkImports} runs in C{twistd}; the child runs L{main}
(C{python -m prefork.check}), reading the configuration on its standard
input and writing its verdict as its last line of output.
"""

from __future__ import annotations

import os
import subprocess
import sys

from prefork.child.appload import AppLoadError, loadServed
from prefork.config import ServerConfig
from prefork.hooks import HookLoadError, loadHooks

#: How the child's verdict starts, among whatever the application prints.
VERDICT = "prefork-check: "
#: The longest an import may take, in seconds.
TIMEOUT = 300.0


def checkImports(config: ServerConfig) -> str | None:
    """
    Import the hooks and the application of C{config} in a new Python.

    @return: L{None} if both load, else one line saying why not.
    """
    try:
        child = subprocess.run(
            [sys.executable, "-m", "prefork.check"],
            input=config.toJSON().encode(),
            capture_output=True,
            cwd=os.getcwd(),
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return f"importing {config.served!r} took longer than {TIMEOUT:.0f} s"
    except OSError as e:
        return f"cannot run {sys.executable}: {e.strerror}"
    verdicts = [line for line in child.stdout.decode("utf-8", "replace").splitlines() if line.startswith(VERDICT)]
    if child.returncode == 0 and verdicts == [VERDICT + "ok"]:
        return None
    if verdicts:
        return verdicts[-1][len(VERDICT):]
    errors = child.stderr.decode("utf-8", "replace").strip().splitlines()
    return f"the check process failed (status {child.returncode}): {errors[-1] if errors else 'no output'}"


def main() -> None:
    config = ServerConfig.fromJSON(sys.stdin.read())
    try:
        loadHooks(config.hooks, config.pythonPath)
        loadServed(config)
    except (AppLoadError, HookLoadError) as e:
        verdict, status = str(e), 1
    else:
        verdict, status = "ok", 0
    sys.stdout.flush()
    sys.stdout.write(f"\n{VERDICT}{verdict}\n")
    sys.stdout.flush()
    # Threads the application started must not keep the check waiting.
    os._exit(status)


if __name__ == "__main__":
    main()
