"""Why a cell process failed, in one line: what the runner and a cluster worker both say."""

from __future__ import annotations

import signal


def failure(code: int, stderr) -> str:
    """The last line the process wrote on `stderr` (an open file), else how it ended."""
    stderr.seek(0)
    tail = [line for line in stderr.read().splitlines() if line.strip()][-1:]
    if tail:
        return tail[0]
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
