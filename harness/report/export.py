"""Per-request export: a run's `requests/` rows as CSV or JSON lines (vegeta's `encode`, k6's
`--out json`), streamed file by file and row group by row group so memory holds one batch,
filtered by `--where` and cut to `--columns`; or, per cell, the response-time percentile
distribution in HdrHistogram's text format (`--format hgrm`, milliseconds, as wrk2 prints)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from harness.core.errors import HarnessError
from harness.core.schema import REQUESTS_SCHEMA, SCHEMA_VERSION, VERSION_KEY, upgrade
from harness.core.stats import percentile, response_ns
from harness.store.reader import is_run_dir, legacy_columns, read_metadata

BATCH_ROWS = 65_536
FORMATS = ("csv", "jsonl", "hgrm")
_TOKEN = re.compile(r"""\s*(?:(?P<op>==|!=|<=|>=|<|>)|(?P<text>"[^"]*"|'[^']*')"""
                    r"""|(?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"""
                    r"""|(?P<word>[A-Za-z_][A-Za-z0-9_]*))""")
_OPS = {"==": lambda f, v: f == v, "!=": lambda f, v: f != v, "<": lambda f, v: f < v,
        "<=": lambda f, v: f <= v, ">": lambda f, v: f > v, ">=": lambda f, v: f >= v}
_WORDS = {"true": True, "false": False, "null": None}


def _tokens(text: str) -> list[tuple[str, str]]:
    found, at = [], 0
    while at < len(text.rstrip()):
        match = _TOKEN.match(text, at)
        if match is None or match.end() == at:
            raise HarnessError(f"--where: cannot read {text[at:].strip()[:20]!r} (expected "
                               "COLUMN OP VALUE joined by and, e.g. backend == \"uvloop\")")
        kind = match.lastgroup
        found.append((kind, match[kind]))
        at = match.end()
    return found


def parse_where(text: str, names: list[str]) -> ds.Expression:
    """`backend == "uvloop" and concurrency >= 10`: COLUMN OP VALUE terms joined by `and`;
    OP one of == != < <= > >=; VALUE a quoted string, a number, true, false or null."""
    tokens, expression = _tokens(text), None
    if not tokens:
        raise HarnessError("--where: empty (expected COLUMN OP VALUE, e.g. ok == false)")
    for start in range(0, len(tokens), 4):
        term = tokens[start:start + 3]
        if len(term) != 3 or term[0][0] != "word" or term[1][0] != "op" or term[2][0] == "op":
            raise HarnessError(f"--where: {' '.join(v for _, v in term)!r} is not COLUMN OP "
                               "VALUE (e.g. concurrency >= 10)")
        (_, column), (_, op), (kind, raw) = term
        if column not in names:
            raise HarnessError(f"--where: unknown column {column!r} (the requests' columns: "
                               f"harness schema, or docs/schema.md)")
        if kind == "text":
            value = raw[1:-1]
        elif kind == "number":
            value = float(raw) if any(c in raw for c in ".eE") else int(raw)
        elif raw in _WORDS:
            value = _WORDS[raw]
        else:
            raise HarnessError(f"--where: {raw!r} is not a value (quote a string: \"{raw}\")")
        field = ds.field(column)
        if value is None:
            if op not in ("==", "!="):
                raise HarnessError(f"--where: null compares only with == or != ({column})")
            term_expression = field.is_null() if op == "==" else field.is_valid()
        else:
            term_expression = _OPS[op](field, value)
        expression = term_expression if expression is None else expression & term_expression
        joiner = tokens[start + 3] if start + 3 < len(tokens) else None
        if joiner is not None and joiner != ("word", "and"):
            raise HarnessError(f"--where: expected `and` between terms (got {joiner[1]!r})")
    return expression


def columns_of(text: str | None) -> list[str] | None:
    if not text:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in REQUESTS_SCHEMA.names]
    if unknown:
        raise HarnessError(f"--columns: unknown column {unknown[0]!r} (the requests' columns: "
                           "docs/schema.md)")
    return names


def _files(run: Path) -> list[Path]:
    if not is_run_dir(run):
        raise HarnessError(f"{run}: not a run folder (no run.json)")
    legacy = run / "requests.parquet"  # schema versions 1 and 2
    return ([legacy] if legacy.exists() else []) + sorted((run / "requests").glob("*.parquet"))


def batches(run: Path, where: ds.Expression | None = None,
            columns: list[str] | None = None) -> Iterator[pa.Table]:
    """The run's request rows, upgraded to the current schema, a row group at a time."""
    per_scenario = legacy_columns(read_metadata(run))
    for path in _files(run):
        try:
            source = pq.ParquetFile(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise HarnessError(f"{path}: not a readable Parquet file ({exc})") from None
        version = int((source.schema_arrow.metadata or {}).get(VERSION_KEY, b"0"))
        if not version or version > SCHEMA_VERSION:
            raise HarnessError(f"{path}: schema version {version or 'missing'}: not one this "
                               f"harness reads (1 to {SCHEMA_VERSION})")
        for batch in source.iter_batches(batch_size=BATCH_ROWS):
            table = upgrade(pa.Table.from_batches([batch]), version, REQUESTS_SCHEMA,
                            per_scenario)
            if where is not None:
                table = table.filter(where)
            if columns is not None:
                table = table.select(columns)
            if table.num_rows:
                yield table


def write_csv(tables: Iterator[pa.Table], sink) -> int:
    import pyarrow.csv as csv

    rows, writer = 0, None
    for table in tables:
        if writer is None:
            writer = csv.CSVWriter(sink, table.schema)
        writer.write_table(table)
        rows += table.num_rows
    if writer is not None:
        writer.close()
    return rows


JSON_ROWS = 2048  # rows turned into Python objects at once: a row group's would take 100s of MB


def write_jsonl(tables: Iterator[pa.Table], sink) -> int:
    rows = 0
    for table in tables:
        for offset in range(0, table.num_rows, JSON_ROWS):
            chunk = table.slice(offset, JSON_ROWS).to_pylist()
            sink.write("".join(json.dumps(row, default=str) + "\n" for row in chunk).encode())
        rows += table.num_rows
    return rows


def percentile_ticks(per_half: int = 5) -> Iterator[float]:
    """HdrHistogram's percentile iteration (0 … 100, closer together towards the tail)."""
    value = 0.0
    while value < 100.0:
        yield value
        half = 2 ** (int(np.log2(100.0 / (100.0 - value))) + 1)
        value += 100.0 / (per_half * half)
        if 100.0 - value < 1e-9:
            break
    yield 100.0


def hgrm(latency_ms: np.ndarray) -> str:
    """One cell's distribution in HdrHistogram's text format; the values are exact
    percentiles, computed as every percentile the summary shows (core.stats.percentile)."""
    values = np.sort(np.asarray(latency_ms, dtype=np.float64))
    lines = [f"{'Value':>12} {'Percentile':>14} {'TotalCount':>10} {'1/(1-Percentile)':>14}", ""]
    for tick in percentile_ticks():
        if values.size and lines[-1].split()[2:3] == [str(values.size)]:
            tick = 100.0  # every value counted: the last line, as HdrHistogram ends
        value = percentile(values, tick)
        fraction = tick / 100.0
        count = min(values.size, max(1, int(np.ceil(fraction * values.size - 1e-9))))
        tail = f" {1.0 / (1.0 - fraction):14.2f}" if fraction < 1.0 else ""
        lines.append(f"{value:12.3f} {fraction:14.12f} {count:10d}{tail}")
        if tick == 100.0:
            break
    mean = float(values.mean()) if values.size else float("nan")
    std = float(values.std()) if values.size else float("nan")
    top = float(values.max()) if values.size else float("nan")
    lines.append(f"#[Mean    = {mean:12.3f}, StdDeviation   = {std:12.3f}]")
    lines.append(f"#[Max     = {top:12.3f}, Total count    = {values.size:12d}]")
    return "\n".join(lines) + "\n"


def write_hgrm(run: Path, out: Path) -> list[Path]:
    """A file per cell (`cell-NNNN.hgrm`): the response times (end − scheduled start, ms) of
    its measured ok requests, as the summary's percentiles take them."""
    from harness.store.reader import read_table

    meta = read_metadata(run)
    files = _files(run)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in files:  # a cell a file (a run of versions 1 and 2: one for the run)
        table = read_table(path, "requests", meta)
        measured = pc.and_(table["ok"], pc.not_equal(pc.fill_null(table["phase"], "measure"),
                                                     "warmup"))
        table = table.filter(measured)
        latency = response_ns(table["scheduled_ns"].to_numpy(),
                              table["end_ns"].to_numpy()) / 1e6
        target = out / f"{path.stem}.hgrm"
        target.write_text(hgrm(latency))
        written.append(target)
    return written


def export(run: Path, fmt: str, where: str | None, columns: str | None,
           out: Path | None) -> str | None:
    """The command: what to say after `results:` (None when the rows went to stdout)."""
    import os
    import sys

    if fmt == "hgrm":
        if out is None or where or columns:
            raise HarnessError("--format hgrm: needs --out DIR (a file per cell), and takes "
                               "no --where or --columns")
        return f"{out} ({len(write_hgrm(run, out))} cells)"
    expression = parse_where(where, REQUESTS_SCHEMA.names) if where else None
    tables = batches(run, expression, columns_of(columns))
    write = write_csv if fmt == "csv" else write_jsonl
    if out is not None:
        with open(out, "wb") as sink:
            return f"{out} ({write(tables, sink)} rows)"
    try:
        write(tables, sys.stdout.buffer)
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return None
