"""The mock server over TLS (`server.tls: true`): a throwaway CA and a certificate for every
name a client may use for this machine, made at start with trustme and never written beyond a
private temporary folder; the CA's PEM goes to the clients."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

from harness.mock.listen import WILDCARDS

CERT_ENV = "HARNESS_TLS_CERT"  # the server process's key and certificate chain (a PEM file)


def mint(folder: Path, listen: str | None = None) -> tuple[str, str]:
    """(the server's key-and-chain PEM file, written in `folder`; the CA's PEM text). The
    certificate names this machine as a client may: loopback, its host name, and the
    address it listens on (server.listen) when that is one address, not every interface."""
    import trustme

    ca = trustme.CA()
    names = ["127.0.0.1", "::1", "localhost", socket.gethostname()]
    if listen and listen not in WILDCARDS:
        names.append(listen)
    cert = ca.issue_cert(*dict.fromkeys(names))
    path = folder / "server.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # holds the key
    with os.fdopen(fd, "wb") as file:
        file.write(cert.private_key_and_cert_chain_pem.bytes())
    return str(path), ca.cert_pem.bytes().decode()


def server_context(chain_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain_file)
    context.set_alpn_protocols(["http/1.1"])
    return context
