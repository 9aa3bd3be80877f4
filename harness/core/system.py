"""What a process asks of the operating system before it holds thousands of connections."""

from __future__ import annotations

import contextlib
import resource


def raise_fd_limit(wanted: int = 0) -> str | None:
    """Soft open-file limit up to the hard limit (thousands of connections in flight need as
    many open files); a note when it stays below `wanted`. A failure to raise it shows up as
    connect errors, in the rows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in (hard, wanted):  # macOS refuses an unlimited soft limit: then ask for less
        if soft < limit and (hard == resource.RLIM_INFINITY or limit <= hard):
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
                soft = limit
                break
    if soft != resource.RLIM_INFINITY and soft < wanted:
        return (f"open-file limit {soft} (hard {hard}), below the {wanted} connections it may "
                "need; raise it with `ulimit -n`")
    return None
