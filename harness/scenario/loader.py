"""Scenario files: YAML read safely, within limits, into the typed models; anything wrong is
one line naming the file, the field and the problem."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

from pydantic import (
    ValidationError,
)

from harness.core.errors import ECHO_LIMIT, HarnessError, ScenarioError, brief
from harness.core.secrets import UnreadableReference, has_reference, interpolate, remember, scrub
from harness.scenario.model import LoadedScenario, Scenario
from harness.scenario.secrets import secret_field, secrets_in
from harness.scenario.suggest import did_you_mean

# Limits on the file itself, checked before anything large is read, parsed or built: a real
# scenario is a few hundred bytes, nests five levels and holds a few dozen values.
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 10_000
MAX_INT_CHARS = 100
MAX_LINE = 300  # characters of one problem description, whatever it quotes
# C0 and C1 control characters except tab, newline and carriage return; lone surrogates.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
def _line(text: str | bytes, pos: int) -> str:
    """`line N` of the character (or byte) at pos, as a field of a one-line error."""
    newline = b"\n" if isinstance(text, bytes) else "\n"
    return f"line {text.count(newline, 0, pos) + 1}"


def _one_line(problem: str) -> str:
    problem = " ".join(problem.split())
    return problem if len(problem) <= MAX_LINE else problem[: MAX_LINE - 1] + "…"


def _check_values(data: object, path: str) -> None:
    """Every key a string, no control characters in keys or values (a `"\\e[2J"` escape in a
    description would reach the terminal), no !!binary. Iterative; aliases visited once."""
    stack: list[tuple[str, object]] = [("", data)]
    seen: set[int] = set()
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if match := _CONTROL.search(value):
                shown = "" if secret_field(where) else f" (got {brief(value)})"
                raise ScenarioError(path, where, f"control character U+{ord(match[0]):04X} not "
                                                 f"allowed{shown}")
        elif isinstance(value, bytes | bytearray):
            raise ScenarioError(path, where, "must not be binary (!!binary)")
        elif isinstance(value, dict | list | tuple | set | frozenset):
            if id(value) in seen:
                continue
            seen.add(id(value))
            if isinstance(value, dict):
                items = []
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise ScenarioError(path, where, f"key {brief(key)} must be a string "
                                                         "(quote it)")
                    if match := _CONTROL.search(key):
                        raise ScenarioError(path, where, f"key {brief(key)}: control character "
                                                         f"U+{ord(match[0]):04X} not allowed")
                    items.append((f"{where}.{_cut(key)}" if where else _cut(key), item))
            elif isinstance(value, list | tuple):
                items = [(f"{where}[{i}]", item) for i, item in enumerate(value)]
            else:
                items = [(where, item) for item in value]
            stack.extend(reversed(items))  # document order: the first problem is reported


_TAGS = {"fixed", "uniform", "exponential", "lognormal", "io", "http", "cpu", "cpu_release",
         "race", "pipeline", "fake"}
_BODY_TAGS = {"sized", "read", "drawn"}  # workload.body's kinds (harness.scenario.workload)


def _cut(key: str) -> str:
    """A key as it appears in a field path, cut like an echoed value."""
    return key if len(key) <= ECHO_LIMIT else key[: ECHO_LIMIT - 1] + "…"


def _field_path(loc: tuple, data: object) -> str:
    parts = []
    for i, item in enumerate(loc):
        if i == 1 and loc[0] == "load" and item in ("block", "blocks"):
            continue  # the load's shape (one block or a list), not a key: data stays put
        if isinstance(item, int):
            if isinstance(data, list):  # `concurrency: 0` is reported without an index
                parts.append(f"[{item}]")
                data = data[item] if item < len(data) else None
            continue
        if i > 0 and loc[i - 1] == "body" and item in _BODY_TAGS:
            continue  # the body's kind, not a key: data stays put
        if "[" in item or (item in _TAGS and i > 0 and loc[i - 1] in ("latency", "workload")):
            continue  # pydantic's internal union/validator tags, not the user's keys
        data = data.get(item) if isinstance(data, dict) else None
        parts.append(("." if parts else "") + _cut(item))
    return "".join(parts)


def _problem(err: dict, hide: bool = False) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    messages = {
        "missing": "required",
        "extra_forbidden": "unknown key",
        "greater_than_equal": f"must be >= {ctx.get('ge')}",
        "greater_than": f"must be > {ctx.get('gt')}",
        "less_than_equal": f"must be <= {ctx.get('le')}",
        "less_than": f"must be < {ctx.get('lt')}",
        "int_type": "must be an integer",
        "int_parsing": "must be an integer",
        "int_from_float": "must be an integer",
        "float_type": "must be a number",
        "float_parsing": "must be a number",
        "finite_number": "must be a finite number",
        "string_type": "must be a string",
        "dict_type": "must be a mapping",
        "model_type": "must be a mapping",
        "tuple_type": "must be a list",
        "literal_error": f"must be {ctx.get('expected')}",
        "string_pattern_mismatch": "must be letters, digits, '_', '.', '-'",
        "string_too_long": f"must be at most {ctx.get('max_length')} characters",
        "too_short": "must not be empty",
        "too_long": f"must have at most {ctx.get('max_length')} items "
                    f"(got {len(value) if isinstance(value, dict | list) else 'more'})",
        "union_tag_invalid": f"must be one of {ctx.get('expected_tags')} "
                             f"(got {brief(ctx.get('tag'))})",
        "union_tag_not_found": f"needs '{ctx.get('discriminator', '').strip(chr(39))}'",
    }
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    message = messages.get(kind, err["msg"])
    if kind not in ("missing", "union_tag_not_found", "too_long") and not isinstance(
            value, (dict, list)) and not hide:
        message += f" (got {brief(value)})"
    return message


def load_scenario(path: str | Path, overrides: tuple[str, ...] = ()) -> LoadedScenario:
    """Read at most MAX_FILE_BYTES; a file that is not UTF-8 text is refused before parsing.
    `overrides`: `KEY.PATH=VALUE` (VALUE read as YAML), each set before validation; the
    text kept is then the effective one."""
    path = str(path)
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > MAX_FILE_BYTES:  # a regular file; a pipe or device reports 0
                raise ScenarioError(path, "", f"too large: {size} bytes (at most 1 MiB)")
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ScenarioError(path, "", "no such file") from None
    except OSError as exc:
        raise ScenarioError(path, "", _one_line(f"cannot read: {exc}")) from None
    if len(data) > MAX_FILE_BYTES:
        raise ScenarioError(path, "", "too large: more than 1 MiB")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ScenarioError(path, "", "not UTF-8 text (a UTF-16 byte-order mark): save it as UTF-8")
    if (nul := data.find(b"\0")) >= 0:
        raise ScenarioError(path, _line(data, nul), "not a text file (a NUL byte)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(path, _line(data, exc.start),
                            f"not UTF-8 text (byte 0x{data[exc.start]:02x})") from None
    return overridden_scenario(text, path, overrides)


def overridden_scenario(text: str, path: str, overrides: tuple[str, ...] = ()
                        ) -> LoadedScenario:
    """scenario_from_text with each override set first (the kept text is then the effective
    one, and the overrides are kept beside it)."""
    if not overrides:
        return scenario_from_text(text, path)
    loaded = scenario_from_text(_overridden(text, path, overrides), path)
    return replace(loaded, overrides=tuple(scrub(item) for item in overrides))


def _overridden(text: str, path: str, overrides: tuple[str, ...]) -> str:
    """The scenario's YAML with each KEY.PATH=VALUE set (mappings made on the way), dumped
    again: the effective text a run keeps (and can be run again from)."""
    import yaml

    from harness.scenario.yamltext import load_yaml

    data = load_yaml(text, path)
    if not isinstance(data, dict):
        raise ScenarioError(path, "", "must be a YAML mapping with name, server, workload, load")
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise HarnessError(f"--set {scrub(item)!r}: expected KEY.PATH=VALUE, e.g. "
                               "load.concurrency=50")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise HarnessError(f"--set {key}: the value is not YAML "
                               f"({_one_line(str(exc))})") from None
        node = data
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ScenarioError(path, ".".join(parts[:depth + 1]),
                                    f"is not a mapping: --set {key} cannot set a key in it")
            node = child
        node[parts[-1]] = value
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def scenario_from_text(text: str, path: str = "<scenario>") -> LoadedScenario:
    """parse_scenario, keeping the text and the secrets read from the environment (to keep
    them out of the text the results record)."""
    scenario, secrets = _parse(text, path)
    return LoadedScenario(path, text, scenario, secrets)


def parse_scenario(text: str, path: str = "<scenario>", recorded: bool = False) -> Scenario:
    """Validate scenario text; anything wrong is a ScenarioError of one line naming `path`, the
    field (or line) and the problem, checked in order of cost: size and characters, the shape
    of the YAML events, the built values, then the models. `recorded`: the text a run kept
    (a report reads it): a `${NAME}` whose variable is unset, or a malformed one, stays as
    written."""
    return _parse(text, path, recorded)[0]


# Written into the results by nature (folder names, columns, the threshold table): a value
# read from the environment there would be written too.
_NOT_READ = ("name", "description", "expect")


def _written(data: dict):
    """(field, value) of the fields the results write as they are: _NOT_READ, and the
    workload's path and its requests' names and paths (the path and request columns)."""
    for key in _NOT_READ:
        yield key, data.get(key)
    workload = data.get("workload")
    if isinstance(workload, dict):
        yield "workload.path", workload.get("path")
        entries = workload.get("requests")
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, dict):
                yield f"workload.requests[{i}].name", entry.get("name")
                yield f"workload.requests[{i}].path", entry.get("path")


def _interpolate(data: dict, path: str, recorded: bool) -> list[str]:
    """Each `${NAME}` in a string value replaced, in place, by the environment's value; the
    values read. Keys are never read. Iterative; aliased collections visited once."""
    for field, value in () if recorded else _written(data):
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and has_reference(item):
                raise ScenarioError(path, field, "${NAME} is not read here: it is written into "
                                                 "the results (a secret goes in a header)")
    lookup = (lambda name: os.environ.get(name, f"${{{name}}}")) if recorded else os.environ.get
    used: list[str] = []
    stack: list[tuple[str, object]] = [("", data)]
    seen: set[int] = set()
    while stack:
        where, container = stack.pop()
        if id(container) in seen:
            continue
        seen.add(id(container))
        items = (((f"{where}.{_cut(k)}" if where else _cut(k)), k, v) for k, v in
                 container.items()) if isinstance(container, dict) else (
            (f"{where}[{i}]", i, v) for i, v in enumerate(container))
        for field, key, value in list(items):
            if isinstance(value, dict | list):
                stack.append((field, value))
            elif isinstance(value, str) and "${" in value:
                try:
                    container[key], read = interpolate(value, lookup)
                except UnreadableReference as exc:
                    if recorded:  # a run's text from before `${` was read: as it was written
                        continue
                    raise ScenarioError(path, field, str(exc)) from None
                used += read
    return [v for v in dict.fromkeys(used) if v]


def _parse(text: str, path: str, recorded: bool = False) -> tuple[Scenario, tuple[str, ...]]:
    """The scenario and the secrets read from the environment for it (its `${NAME}` values, the
    password of $HARNESS_POSTGRES_DSN or .pg/dsn when it uses it). Every secret it holds is
    remembered (core.secrets.scrub) and kept out of its error messages."""
    if len(text) > MAX_FILE_BYTES:
        raise ScenarioError(path, "", "too large: more than 1 MiB")
    if match := _CONTROL.search(text):
        raise ScenarioError(path, _line(text, match.start()),
                            f"control character U+{ord(match[0]):04X} not allowed")
    from harness.scenario.yamltext import load_yaml  # not in a cell: it gets JSON

    data = load_yaml(text, path)
    return _validate(data, path, recorded)


def wire_text(loaded: LoadedScenario) -> str:
    """The scenario as a cell or a mock server on another interpreter reads it: its data as
    JSON, `${NAME}` references left for the process to read from its environment, as the
    YAML would. JSON, since a free-threaded build may have no PyYAML wheel."""
    from harness.scenario.yamltext import load_yaml

    return json.dumps(load_yaml(loaded.text, loaded.path), default=str)


def parse_wire(text: str, path: str = "<scenario>") -> Scenario:
    """parse_scenario for the text a runner sent: JSON (wire_text), or the YAML itself (a
    flow-style YAML file starts with `{` too)."""
    try:
        data = json.loads(text)
    except ValueError:
        return parse_scenario(text, path)
    return _validate(data, path, False)[0]


def _validate(data: object, path: str, recorded: bool) -> tuple[Scenario, tuple[str, ...]]:
    if not isinstance(data, dict):
        raise ScenarioError(path, "", "must be a YAML mapping with name, server, workload, load")
    _check_values(data, path)
    literal = secrets_in(data)
    read = _interpolate(data, path, recorded)
    secrets = tuple(dict.fromkeys((*read, *(s for s in secrets_in(data) if s not in literal))))
    remember((*literal, *secrets))
    try:
        if read:
            _check_values(data, path)  # the values read from the environment
        return Scenario.model_validate(data), secrets
    except ScenarioError as exc:
        raise ScenarioError(path, exc.field, scrub(exc.problem)) from None
    except ValidationError as exc:
        errors = exc.errors()
        field = _field_path(errors[0]["loc"], data)
        problem = _problem(errors[0], hide=secret_field(field))
        if errors[0]["type"] == "extra_forbidden":
            problem += did_you_mean(errors[0]["loc"])
        if ": " in problem and not field:  # cross-field checks name their own field
            field, problem = problem.split(": ", 1)
        more = len(errors) - 1
        problem = _one_line(scrub(problem) + (f" (+{more} more)" if more else ""))
        raise ScenarioError(path, field, problem) from None
