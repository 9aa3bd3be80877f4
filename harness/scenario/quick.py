"""One-line runs: `harness run URL -n 1000 -c 50` (as hey's) made into a scenario's text, which
is then validated like any file's and kept in run.json, so the run can be repeated from it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import yaml

from harness.core.errors import HarnessError

DEFAULT_REQUESTS = 200
DEFAULT_CONCURRENCY = 50
DEFAULT_BACKEND = "uvloop"
DEFAULT_CLIENT = "lean"


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


@dataclass(frozen=True)
class Quick:
    """What the command line said of a one-line run; None: the default."""

    requests: int | None = None
    concurrency: int | None = None
    rate: str | None = None
    duration: str | None = None
    backends: tuple[str, ...] = ()
    clients: tuple[str, ...] = ()
    method: str | None = None
    headers: tuple[str, ...] = ()  # "Name: value"
    body: str | None = None  # a file's path
    tls_ca: str | None = None  # a PEM file's path
    insecure: bool | None = None
    given: tuple[str, ...] = field(default=())  # the options given, for errors


def scenario_text(url: str, quick: Quick) -> str:
    """The scenario of a one-line run against `url`, named after its host."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise HarnessError(f"{url[:80]}: not a URL such as http://127.0.0.1:8080/path")
    target = f"{parts.scheme}://{parts.netloc}"
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    workload: dict = {"type": "http", "path": path,
                      "client": list(quick.clients) or [DEFAULT_CLIENT]}
    if quick.method:
        workload["method"] = quick.method.upper()
    if quick.headers:
        workload["headers"] = dict(_header(text) for text in quick.headers)
    if quick.body:
        workload["body"] = {"file": quick.body}
    if quick.tls_ca and quick.insecure:
        raise HarnessError("--tls-ca, --insecure: give one: a CA to verify with, or no check")
    if (quick.tls_ca or quick.insecure) and parts.scheme != "https":
        raise HarnessError(f"{'--tls-ca' if quick.tls_ca else '--insecure'}: only for an "
                           "https:// URL")
    if quick.tls_ca:
        workload["tls"] = {"ca": quick.tls_ca}
    elif quick.insecure:
        workload["tls"] = {"verify": False}
    concurrency = quick.concurrency or DEFAULT_CONCURRENCY
    if quick.rate is not None:
        load: dict = {"rate": quick.rate, "max_in_flight": concurrency}
    else:
        load = {"concurrency": concurrency}
    if quick.duration is not None:
        load["duration"] = quick.duration
    if quick.requests is not None or (quick.duration is None and quick.rate is None):
        load["requests"] = quick.requests or DEFAULT_REQUESTS
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", parts.hostname)
    data = {"name": name, "description": f"harness run {url}", "target": target,
            "workload": workload, "load": load,
            "backends": list(quick.backends) or [DEFAULT_BACKEND]}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise HarnessError(f"--header {text!r}: expected 'Name: value'")
    return name.strip(), value.strip()


def load(text: str, sets: tuple[str, ...], backends: tuple[str, ...], options: dict):
    """`run`'s argument: a scenario file, or the scenario of a one-line run against a URL
    (`options`: the URL run's options by name, None or () when not given)."""
    from pathlib import Path

    from harness.scenario.loader import load_scenario, overridden_scenario

    given = tuple(f"--{name.replace('_', '-')}" for name, value in options.items()
                  if value not in (None, ()))
    if not is_url(text):
        if given:
            raise HarnessError(f"{given[0]}: only for a URL (on a scenario file: --set, e.g. "
                               "--set load.concurrency=50)")
        return load_scenario(Path(text), sets)
    quick = Quick(**options, backends=backends, given=given)
    return overridden_scenario(scenario_text(text, quick), text, sets)
