"""`harness serve` under another interpreter (`--python`, `server.python`): the mock server as
a child process of that interpreter's worker environment, in the foreground until Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable

from harness.run.lineup import check_server
from harness.run.pythons import Finder, resolve_all
from harness.run.workers import prepare
from harness.scenario.loader import wire_text
from harness.scenario.model import LoadedScenario


def serve_under(item: LoadedScenario, spec: str, port: int, announce: Callable[[str], None],
                where: str) -> int:
    """Its exit status (130 after Ctrl-C)."""
    finder = Finder()
    interpreter = resolve_all((spec,), where, finder)[0][0]
    worker = prepare(interpreter, finder.root,
                     lambda line: print(f"note: {line}", file=sys.stderr, flush=True))
    check_server(worker, item, where)
    proc = subprocess.Popen([worker.python, "-m", "harness.mock", str(port)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=interpreter.environ())
    # A SIGTERM to us stops the server too (a Ctrl-C reaches both: one process group).
    signal.signal(signal.SIGTERM, lambda signum, frame: proc.terminate())
    try:
        proc.stdin.write(wire_text(item))
        proc.stdin.close()
        url = proc.stdout.readline().strip()
        if not url.startswith("http://"):
            return proc.wait()  # it said why on stderr
        announce(url)
        return proc.wait()
    except KeyboardInterrupt:  # the terminal's Ctrl-C reached the server too: it stops
        proc.wait()
        return 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
