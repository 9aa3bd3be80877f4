"""An external target: the user's own service instead of the mock server. Only loopback is
accepted unless the run says `--allow-remote`: this harness generates load, and load must not
leave the machine by accident. No DNS look-up decides it: only IP literals in 127.0.0.0/8, ::1
and the name `localhost` count as loopback."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def split_target(url: str) -> tuple[str, int]:
    """(host, port) of `http(s)://host[:port]`; ValueError with a one-line reason otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must look like http://127.0.0.1:8080 (got {url[:60]!r})")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be scheme, host and port only; put the path in workload.path")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"bad port in {url[:60]!r}") from None
    return parts.hostname, port


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other name counts as remote: no look-up
