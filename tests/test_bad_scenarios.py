"""Hostile scenario files: each is refused with one line `FILE: field: problem`, exit
status 2, never a traceback, within 5 s under a 1 GiB address-space limit; echoed values are cut
to 60 characters. The corpus is tests/bad_scenarios/ (fragments in its expected.yaml); the
megabyte cases are generated here; the shipped scenarios are mutated key by key."""

from __future__ import annotations

import copy
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from harness.core.errors import ECHO_LIMIT, ScenarioError, brief
from harness.scenario.loader import MAX_FILE_BYTES, load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "bad_scenarios"
EXPECTED: dict[str, str] = yaml.safe_load((CORPUS / "expected.yaml").read_text(encoding="utf-8"))
BASE = """\
name: t
server:
  endpoints:
    api: {latency: 10ms}
workload: {endpoint: api}
load: {requests: 5, concurrency: 2}
"""


def assert_clean(message: str, path: str) -> str:
    """One line, naming the file first, no echoed run of input longer than the cut."""
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message and "\r" not in message, message
    assert not re.search(rf"(.)\1{{{ECHO_LIMIT},}}", message), f"echo not cut: {message}"
    assert len(message) < len(path) + 400, message
    return message[len(path) + 2:]


def rejection(path: Path | str) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return str(info.value)


# ---- the corpus --------------------------------------------------------------------------


def test_corpus_and_manifest_match():
    files = {p.name for p in CORPUS.iterdir() if not p.name.startswith(".")} - {"expected.yaml"}
    assert files == set(EXPECTED)
    assert len(files) >= 40
    for fragment in EXPECTED.values():  # a field (or line) and a problem, not a bare word
        assert ": " in fragment or fragment.startswith(("must be", "key ", "not ")), fragment


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_case_is_refused_in_one_line(name):
    path = CORPUS / name
    message = rejection(path)
    assert_clean(message, str(path))
    assert EXPECTED[name] in message


CLI_CASES = ["deep_flow_list.yaml", "nul_byte.yaml", "latin1.yaml", "control_escape_in_string.yaml",
             "fault_two_effects.yaml", "fault_shares_over_1.yaml",
             "size_100GiB.yaml", "concurrency_1e9.yaml", "python_object_tag.yaml",
             "unknown_key_200_characters.yaml", "requests_duplicate_names.yaml",
             "requests_weight_zero.yaml", "requests_unknown_key.yaml", "requests_with_path.yaml"]


def validate_limited(path: Path, timeout: float = 5.0) -> tuple[subprocess.CompletedProcess, float]:
    """`harness validate PATH` in a child limited to 1 GiB of address space."""

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    start = time.monotonic()
    try:
        result = subprocess.run([sys.executable, "-m", "harness", "validate", str(path)],
                                capture_output=True, text=True, timeout=timeout,
                                preexec_fn=limit, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{path.name}: not refused within {timeout} s")
    return result, time.monotonic() - start


def assert_cli_refuses(path: Path, fragment: str) -> float:
    result, elapsed = validate_limited(path)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert_clean(lines[0][len("error: "):], str(path))
    assert fragment in lines[0]
    return elapsed


@pytest.mark.parametrize("name", CLI_CASES)
def test_corpus_case_through_the_cli(name):
    assert CLI_CASES and name in EXPECTED
    assert assert_cli_refuses(CORPUS / name, EXPECTED[name]) < 5


# ---- the heavy cases: generated, under a memory limit, against the clock -----------------

MB = 1_000_000
HEAVY = {
    "deep_list_5000": ("a: " + "[" * 5000 + "]" * 5000 + "\n",
                       "line 1: nested more than 64 levels deep"),
    "deep_mapping_5000": ("a: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
                          "line 1: nested more than 64 levels deep"),
    "megabyte_description": (BASE + "description: " + "d" * MB + "\n",
                             "description: must be at most 4096 characters (got 'dddd"),
    "megabyte_quoted_name": (BASE.replace("name: t", 'name: "' + "n" * MB + '"'),
                             "name: must be at most 64 characters"),
    "megabyte_key": (BASE + "k" * MB + ": 1\n", "line 7: could not find expected ':'"),
    "megabyte_explicit_key": (BASE + "? " + "k" * MB + "\n: 1\n", "k" * 59 + "…: unknown key"),
    "megabyte_of_digits_as_duration": (
        BASE.replace("concurrency: 2", "concurrency: 2, duration: " + "1" * MB + "x"),
        "load.duration: must be a duration like 250ms"),
    "megabyte_of_values": (BASE + "x: [" + "0," * (MB // 2) + "0]\n",
                           "line 7: more than 10000 values"),
    "megabyte_of_keys": (BASE + "".join(f"k{i}: 1\n" for i in range(MB // 10)),
                         "more than 10000 values"),
    "megabyte_of_aliases": (BASE + "a: &a [1]\nb: [" + "*a, " * (MB // 5) + "]\n",
                            "line 8: more than 10000 values"),
}


@pytest.mark.parametrize("name", sorted(HEAVY))
def test_heavy_case_is_refused_fast_under_a_memory_limit(name, tmp_path):
    text, fragment = HEAVY[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    assert path.stat().st_size <= MAX_FILE_BYTES  # these get past the size limit on purpose
    assert assert_cli_refuses(path, fragment) < 5


def test_a_100_megabyte_file_is_refused_unread(tmp_path):
    path = tmp_path / "huge.yaml"
    with path.open("w", encoding="utf-8") as file:
        file.write(BASE + "description: ")
        chunk = "d" * MB
        for _ in range(100):
            file.write(chunk)
    size = path.stat().st_size
    assert assert_cli_refuses(path, f"too large: {size} bytes (at most 1 MiB)") < 5


def test_size_limit_is_exact(tmp_path):
    path = tmp_path / "limit.yaml"
    padding = MAX_FILE_BYTES - len(BASE) - len("#\n")
    path.write_text(BASE + "#" + " " * padding + "\n", encoding="utf-8")
    assert path.stat().st_size == MAX_FILE_BYTES
    assert load_scenario(path).scenario.name == "t"
    path.write_text(BASE + "#" + " " * (padding + 1) + "\n", encoding="utf-8")
    assert "too large" in rejection(path)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_an_endless_device_is_read_only_up_to_the_limit():
    assert rejection("/dev/zero") == "/dev/zero: too large: more than 1 MiB"


def test_odd_paths_still_give_one_line(tmp_path):
    assert rejection(tmp_path).startswith(f"{tmp_path}: cannot read: ")
    path = tmp_path / "two\nlines.yaml"
    path.write_text(BASE.replace("concurrency: 2", "concurrency: 0"), encoding="utf-8")
    message = rejection(path)
    assert message == f"{tmp_path}/two\\nlines.yaml: load.concurrency: must be >= 1 (got 0)"


# ---- bounds: inclusive, and what stays valid -----------------------------------------------


def scenario_with(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new, 1)


@pytest.mark.parametrize("text", [
    scenario_with("concurrency: 2", "concurrency: [1, 100000], workers: 1024"),
    scenario_with("requests: 5", "requests: 1000000000, duration: 24h"),
    scenario_with("latency: 10ms", "latency: 1h, size: 1GiB, seed: 9223372036854775807"),
    scenario_with("latency: 10ms", "latency: {dist: uniform, min: 0, max: 3600}"),
    scenario_with("endpoint: api", "endpoint: api, timeout: {connect: 24h, total: 24h}"),
    scenario_with("name: t", "name: " + "n" * 64 + "\ndescription: " + "d" * 4096
                  + "\nrepeat: 1000\npool_size: 1024"),
    scenario_with("name: t", "name: t\nexpect: ['p99_ms < " + "0" * 191 + "']"),
    "\ufeff" + BASE.replace("\n", "\r\n"),  # a byte-order mark, CRLF line ends
    scenario_with("name: t", "name: t\ndescription: \"tab\\there, caf\u00e9 \u2713 \U0001f680\""),
])
def test_values_at_the_bounds_are_valid(text):
    parse_scenario(text, "edge.yaml")


def test_echoed_values_are_cut_to_60_characters():
    assert brief("x" * 10) == "'xxxxxxxxxx'"
    assert len(brief("x" * MB)) == ECHO_LIMIT and brief("x" * MB).endswith("…")
    assert len(brief(list(range(MB)))) <= ECHO_LIMIT
    assert len(brief(10**5000)) <= ECHO_LIMIT  # beyond int → str conversion limit
    assert "\n" not in brief("a\nb" * 100)


# ---- mutants of every shipped scenario ---------------------------------------------------

SHIPPED = sorted((ROOT / "scenarios").glob("*.yaml"))
OTHER_TYPES = ["text", 7, 2.5, True, None, [1, "x"], {"k": 1}]
UNKNOWN = "zz_unknown"


def values(data, path=()):
    """(path, value) of every value below the root, in document order."""
    items = data.items() if isinstance(data, dict) else enumerate(data) \
        if isinstance(data, list) else ()
    for key, value in items:
        yield path + (key,), value
        yield from values(value, path + (key,))


def mutated(data, path, change):
    data = copy.deepcopy(data)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    change(parent, path[-1])
    return data


def dotted(path) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".")


def required(scenario, path) -> bool:
    """Whether the key at path is a required field of the model that holds it."""
    owner = scenario
    for key in path[:-1]:
        owner = owner[key] if isinstance(key, int) or isinstance(owner, dict) \
            else getattr(owner, key)
    field = type(owner).model_fields.get(path[-1]) if isinstance(owner, BaseModel) else None
    return field is not None and field.is_required()


def mutants(data, scenario):
    """(kind, path, expected, mutant); expected is 'reject', or 'either' (valid or refused)."""
    for path, _ in values(data):
        if isinstance(path[-1], str):
            def drop(parent, key):
                del parent[key]
            yield ("drop", path, "reject" if required(scenario, path) else "either",
                   mutated(data, path, drop))
    for path, value in [((), data), *values(data)]:
        if isinstance(value, dict):
            def add(parent, key):
                parent[key] = 1
            yield "add", path + (UNKNOWN,), "reject", mutated(data, path + (UNKNOWN,), add)
    for path, value in values(data):
        for other in OTHER_TYPES:
            if type(other) is not type(value):
                def swap(parent, key, other=other):
                    parent[key] = copy.deepcopy(other)
                yield f"= {other!r}", path, "either", mutated(data, path, swap)


@pytest.mark.parametrize("shipped", SHIPPED, ids=lambda p: p.name)
def test_mutants_of_shipped_scenarios_are_valid_or_cleanly_refused(shipped):
    name = str(shipped.relative_to(ROOT))
    text = shipped.read_text(encoding="utf-8")
    data, scenario = yaml.safe_load(text), parse_scenario(text, name)
    failures, counts = [], {"valid": 0, "refused": 0}
    for kind, path, expected, mutant in mutants(data, scenario):
        what = f"{kind} {dotted(path)}"
        try:
            parse_scenario(yaml.safe_dump(mutant, sort_keys=False, allow_unicode=True), name)
        except ScenarioError as exc:
            counts["refused"] += 1
            field = assert_clean(str(exc), name).split(": ", 1)[0]
            if kind == "add" and field != dotted(path):
                failures.append(f"{what}: the unknown key is not named: {exc}")
            elif kind != "drop" and re.split(r"[.\[]", field)[0] != path[0]:
                failures.append(f"{what}: another field is named: {exc}")
        except Exception as exc:  # exactly what this test is looking for
            failures.append(f"{what}: {type(exc).__name__}: {exc}")
        else:
            counts["valid"] += 1
            if expected == "reject":
                failures.append(f"{what}: accepted")
    assert not failures, "\n".join(failures)
    assert counts["refused"] > counts["valid"] > 0, counts
