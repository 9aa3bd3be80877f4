"""TLS on the client side: what a cell is told (plain data: whether to verify, the CA's PEM
text, the name to send as SNI) and the one SSL context each process builds from it."""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class TlsSettings:
    verify: bool = True
    ca_pem: str | None = None  # trusted instead of the system's store; None: the system's
    sni: str | None = None  # server name sent (and verified); None: the URL's host

    @classmethod
    def from_data(cls, data: dict | None) -> TlsSettings | None:
        return None if data is None else cls(**data)


@functools.cache
def client_context(settings: TlsSettings) -> ssl.SSLContext:
    """One context per process and settings: building one loads the CA store, which costs more
    than a handshake. No session resumption: every connection pays a full handshake."""
    context = ssl.create_default_context(cadata=settings.ca_pem)
    if not settings.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


def server_name(settings: TlsSettings, host: str) -> str:
    return settings.sni or host


CONNECTS = "connect_ns"  # the key, in a cell's extras, of its connections opened before the clock


def pooled_connects(found: list[dict]) -> dict:
    """The connect times several processes' extras hold, as one cell's: all of them."""
    pooled = [ns for extras in found for ns in extras.get(CONNECTS) or ()]
    return {CONNECTS: pooled} if pooled else {}


def tls_fields(workload, ca_pem: str | None) -> dict:
    """TlsSettings' fields from the workload's `tls` block and its CA file's text `ca_pem`
    (read by the runner: a worker on another machine has no such file)."""
    tls = getattr(workload, "tls", None)
    return {"verify": tls.verify if tls is not None else True, "ca_pem": ca_pem,
            "sni": tls.sni if tls is not None else None}


def cell_tls(fields: dict, url: str, server_ca: str | None) -> dict | None:
    """What a cell's job says of TLS, None for an http:// URL: `fields`, the CA the mock
    server the harness started was made with when they name none."""
    if not url.startswith("https://"):
        return None
    return {**fields, "ca_pem": fields["ca_pem"] or server_ca}
