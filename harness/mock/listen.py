"""Where the mock server listens (`server.listen`, an IP literal) and the URLs that reach it:
the bound address itself, or for a wildcard (0.0.0.0, ::) this machine's host name, which a
client on this machine or on another one can use alike."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from harness.core.errors import HarnessError

WILDCARDS = ("0.0.0.0", "::")


def family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET


def listening_socket(host: str, port: int, backlog: int, reuse_port: bool = False):
    """A bound, listening socket; `::` takes IPv4 connections too (one wildcard for both, as
    0.0.0.0 would not)."""
    return socket.create_server((host, port), family=family(host), backlog=backlog,
                                reuse_port=reuse_port, dualstack_ipv6=host == "::")


def url_for(host: str, port: int, tls: bool = False) -> str:
    """The URL a client uses for a server bound to host:port."""
    shown = socket.gethostname() if host in WILDCARDS else host
    scheme = "https" if tls else "http"
    return f"{scheme}://[{shown}]:{port}" if ":" in shown else f"{scheme}://{shown}:{port}"


def seen_from_elsewhere(url: str) -> str:
    """`url` (as url_for made it) for a client on another machine: the same, unless the server
    is bound to loopback, which no other machine reaches."""
    host = urlsplit(url).hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: a wildcard bind
        loopback = False
    if loopback:
        raise HarnessError(f"the mock server listens on {host} (loopback): a cell on another "
                           "machine cannot reach it; set server.listen: 0.0.0.0 (or ::)")
    return url
