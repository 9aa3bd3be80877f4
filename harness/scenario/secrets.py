"""Where a scenario holds secrets (harness.core.secrets says what a secret is), and its text as
kept in the results: each secret's YAML scalar re-written, whatever quoting, escapes or block
style spelled it, so the kept text is still a scenario that parses."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from harness.core import postgres
from harness.core.secrets import (
    MASK,
    MIN_SEARCHED,
    dsn_secrets,
    has_reference,
    is_secret_header,
    redact_dsn,
)

if TYPE_CHECKING:
    import yaml

# A node's span starts with its properties: `&anchor` and `!tag`, each followed by space.
_PROPERTIES = re.compile(r"(?:[&!]\S*\s+)*")


# A request header's field: the workload's own, or a `requests` entry's.
_HEADER_FIELD = re.compile(r"workload\.(?:requests\[\d+\]\.)?headers\.(.+)")


def secret_field(where: str) -> bool:
    """A field path (`workload.dsn`, `workload.headers.X-Api-Key`,
    `workload.requests[0].headers.Cookie`) whose value is a secret: an error about it must not
    quote it."""
    header = _HEADER_FIELD.fullmatch(where)
    return (where == "workload.dsn" or where.startswith("service.env.")
            or (header is not None and is_secret_header(header[1])))


def _header_maps(workload: dict) -> list:
    """The workload's request headers: its own, and each `requests` entry's."""
    entries = workload.get("requests")
    return [workload.get("headers"), *(entry.get("headers") for entry in (
        entries if isinstance(entries, list | tuple) else []) if isinstance(entry, dict))]


def secrets_in(data: object) -> list[str]:
    """The secrets a scenario's data holds: its DSN's password (or, for a postgres pipeline
    without dsn:, that of the DSN it uses: $HARNESS_POSTGRES_DSN or .pg/dsn, core.postgres) and
    its secret headers' values. Spellings with a `${NAME}` are left out: the text keeps the
    reference, the value is counted where read."""
    workload = data.get("workload") if isinstance(data, dict) else None
    if not isinstance(workload, dict):
        return []
    found: list[str] = []
    service = data.get("service")
    env = service.get("env") if isinstance(service, dict) else None
    if isinstance(env, dict):  # a service's environment: secret by default
        found += [value for value in env.values() if isinstance(value, str) and value]
    dsn = workload.get("dsn")
    if isinstance(dsn, str):
        found += dsn_secrets(dsn)
    elif workload.get("database") == "postgres" and (default := postgres.dsn()):
        found += dsn_secrets(default)
    for headers in _header_maps(workload):
        if isinstance(headers, dict):
            found += [value for name, value in headers.items() if isinstance(name, str)
                      and isinstance(value, str) and value and is_secret_header(name)]
    return [s for s in dict.fromkeys(found) if not has_reference(s)]


def model_secrets(scenario) -> list[str]:
    """secrets_in of a validated Scenario (a process that received it whole, not its text)."""
    return secrets_in({"workload": scenario.workload.model_dump()})


def _secret_nodes(root: yaml.Node) -> dict[int, str]:
    """id → kind ("dsn" or "header") of the scalar nodes of workload.dsn, secret headers and
    the service's env values."""
    import yaml

    found: dict[int, str] = {}
    env = _child(_child(root, "service"), "env")
    if isinstance(env, yaml.MappingNode):
        for _, value in env.value:
            if isinstance(value, yaml.ScalarNode):
                found[id(value)] = "header"  # masked whole, as a credential header's value
    workload = _child(root, "workload")
    if isinstance(dsn := _child(workload, "dsn"), yaml.ScalarNode):
        found[id(dsn)] = "dsn"
    entries = _child(workload, "requests")
    maps = [_child(workload, "headers"), *(_child(entry, "headers") for entry in (
        entries.value if isinstance(entries, yaml.SequenceNode) else []))]
    for headers in maps:
        if isinstance(headers, yaml.MappingNode):
            for key, value in headers.value:
                if isinstance(value, yaml.ScalarNode) and is_secret_header(str(key.value)):
                    found[id(value)] = "header"
    return found


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return None
    return next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key),
                None)


def _redacted(value: str, kind: str | None, secrets: list[str]) -> str:
    if kind == "dsn":
        value = redact_dsn(value, keep=has_reference)
    elif kind == "header" and value and not has_reference(value):
        value = MASK
    for secret in secrets:
        value = value.replace(secret, MASK)
    return value


def kept_text(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """The scenario text as results keep it: the DSN's password and secret headers' values
    (any length) and every other secret (`secrets` — values read from the environment — and
    the literal ones, of MIN_SEARCHED characters or more) wherever they occur, replaced by ***.
    A changed scalar is re-written double-quoted; `${NAME}` references stay as written."""
    import yaml  # a cell never keeps text: it may run where PyYAML is not installed

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    root = yaml.compose(text, Loader=base)
    if root is None:
        return text
    data = yaml.load(text, Loader=base)  # noqa: S506 - the safe loader
    searched = sorted({s for s in (*secrets, *secrets_in(data)) if len(s) >= MIN_SEARCHED},
                      key=len, reverse=True)
    kinds = _secret_nodes(root)
    edits = []
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack += [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value
        elif isinstance(node, yaml.ScalarNode):
            new = _redacted(node.value, kinds.get(id(node)), searched)
            if new != node.value:
                start, end = node.start_mark.index, node.end_mark.index
                start = _PROPERTIES.match(text, start, end).end()  # its anchor and tag stay
                newline = "\n" if text[start:end].endswith("\n") else ""  # a block scalar's
                edits.append((start, end, json.dumps(new, ensure_ascii=False) + newline))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    for secret in searched:  # in comments, keys, anywhere else
        text = text.replace(secret, MASK)
    return text
