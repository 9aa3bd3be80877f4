"""The self-contained HTML report: plots as inline SVG (text drawn as paths, so no font is
fetched), inline style, no script, nothing from the network. Reads the Parquet data only."""

from __future__ import annotations

import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness.analysis.summary import Runs, interpreters, measured, speedups
from harness.core.stats import percentile, response_ns
from harness.core.units import format_rate
from harness.report.table import plain, summary_grid

plt.rcParams.update({"svg.fonttype": "path", "figure.figsize": (7.5, 3.6), "font.size": 9,
                     "axes.grid": True, "grid.alpha": 0.3})

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; font-size: 12px; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
.plots figure { margin: 0; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 11px; }
.fail { color: #b00; }
"""
PERCENTILES = np.array([0, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99])


def _label(key: tuple) -> str:
    backend, concurrency, strategy, variant, rate, generators, path, python = key
    parts = [python, backend] if isinstance(python, str) else [backend]
    if strategy != "inline":
        parts.append(strategy)
    if variant != "default":
        parts.append(variant)
    if isinstance(path, str):
        parts.append(path)
    rate = "" if rate is None or pd.isna(rate) else f" {format_rate(rate)}"
    split = f" g={generators}" if generators != 1 else ""
    return "/".join(parts) + f" c={concurrency}{rate}{split}"


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight",
                metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype


def _groups(frame: pd.DataFrame):
    """Per configuration; the path and the interpreter are part of the key (and label) only
    where they vary."""
    keys = ["backend", "concurrency", "strategy", "variant", "rate_per_s", "generators"]
    varying = [k for k in ("path", "python") if frame[k].nunique(dropna=False) > 1]
    for key, rows in frame.groupby([*keys, *varying], sort=False, dropna=False):
        extra = dict(zip(varying, key[len(keys):], strict=True))
        yield (*key[:len(keys)], extra.get("path"), extra.get("python")), rows


def _latency_plots(requests: pd.DataFrame) -> list[tuple[str, str]]:
    """Response time (harness.core.stats.response_ns) of the ok measured requests."""
    ok = measured(requests)
    ok = ok[ok["ok"]]
    if ok.empty:
        return []
    spectrum, axs = plt.subplots()
    cdf, axc = plt.subplots()
    x = 1 / (1 - np.minimum(PERCENTILES, 99.99) / 100)
    for key, rows in _groups(ok):
        latency = response_ns(rows["scheduled_ns"], rows["end_ns"]) / 1e6
        axs.plot(x, percentile(latency, PERCENTILES), marker=".", label=_label(key))
        values = np.sort(latency)
        axc.plot(values, np.arange(1, len(values) + 1) / len(values), label=_label(key))
    axs.set_xscale("log")
    axs.set_xticks(x, [f"{p:g}%" for p in PERCENTILES])
    axs.set_xlabel("percentile")
    axs.set_ylabel("response time (ms)")
    axs.set_title("latency by percentile")
    axc.set_xscale("log")
    axc.set_xlabel("response time (ms)")
    axc.set_ylabel("fraction of requests")
    axc.set_title("latency CDF")
    for ax in (axs, axc):
        ax.legend(fontsize=7)
    return [("latency by percentile", _svg(spectrum)), ("latency CDF", _svg(cdf))]


def _timeline_plots(timeline: pd.DataFrame, lag: pd.DataFrame) -> list[tuple[str, str]]:
    plots = []
    first = timeline[timeline["repetition"] == timeline["repetition"].min()]
    if not first.empty:
        fig, (ax_rps, ax_inf) = plt.subplots(2, 1, sharex=True, figsize=(7.5, 5))
        for key, rows in _groups(first):
            t = rows["t_ns"].to_numpy() / 1e9
            done = rows["completed"].to_numpy()
            # completions over the trailing second: per-100 ms counts are too coarse to read
            back = np.searchsorted(t, t - 1.0)
            span = np.maximum(t - t[back], 1e-3)
            rate = np.where(back < np.arange(len(t)), (done - done[back]) / span, 0.0)
            ax_rps.plot(t, rate, label=_label(key))
            ax_inf.plot(t, rows["in_flight"], label=_label(key))
        ax_rps.set_ylabel("throughput (req/s, 1 s window)")
        ax_rps.set_title("throughput and in flight over time (first repetition)")
        ax_inf.set_ylabel("in flight")
        ax_inf.set_xlabel("time since the cell's start (s)")
        ax_rps.legend(fontsize=7)
        plots.append(("throughput and in flight over time", _svg(fig)))
    first_lag = lag[lag["repetition"] == lag["repetition"].min()] if len(lag) else lag
    if len(first_lag):
        fig, ax = plt.subplots()
        for key, rows in _groups(first_lag):
            rows = rows.sort_values("t_ns")  # a cell's generators' samples, on one clock
            ax.plot(rows["t_ns"] / 1e9, rows["lag_ns"] / 1e6, label=_label(key), lw=0.8)
        ax.set_xlabel("time since the cell's start (s)")
        ax.set_ylabel("event-loop lag (ms)")
        ax.set_title("event-loop lag over time (first repetition)")
        ax.legend(fontsize=7)
        plots.append(("event-loop lag over time", _svg(fig)))
    return plots


def _speedup_plot(summary: pd.DataFrame) -> list[tuple[str, str]]:
    summary = summary[summary["model"] != "open"]  # an open cell's rate is its schedule's
    if summary["concurrency"].nunique() < 2:
        return []
    table = speedups(summary)
    fig, ax = plt.subplots()
    several = table["python"].nunique() > 1
    for (python, backend, strategy, variant), rows in table.groupby(
            ["python", "backend", "strategy", "variant"], sort=False, dropna=False):
        label = "/".join(p for p in (python if several else "inline", backend, strategy,
                                     variant) if p not in ("inline", "default"))
        ax.plot(rows["concurrency"], rows["speedup"], marker="o", label=label)
    levels = sorted(table["concurrency"].unique())
    ax.plot(levels, np.array(levels) / levels[0], ls=":", color="grey", label="linear")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(levels, [str(c) for c in levels])
    ax.set_xlabel("concurrency")
    ax.set_ylabel("speedup (median over repetitions)")
    ax.set_title("speedup vs concurrency")
    ax.legend(fontsize=7)
    return [("speedup vs concurrency", _svg(fig))]


def _interpreter_plot(summary: pd.DataFrame) -> list[tuple[str, str]]:
    """Single-thread cost against scaling, one point per interpreter and backend: what a
    free-threaded build pays per thread and what it gains from threads."""
    table = interpreters(summary)
    if table.empty or table["kernel_ns_per_unit"].isna().all():
        return []
    fig, ax = plt.subplots()
    for column in [c for c in table.columns if c.startswith("speedup:")]:
        ax.scatter(table["kernel_ns_per_unit"], table[column], label=column.split(":")[1])
        for row in table.to_dict("records"):
            ax.annotate(str(row["python"]), (row["kernel_ns_per_unit"], row[column]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axhline(1, ls=":", color="grey")
    high = int(table["concurrency"].max())
    ax.set_xlabel("single-thread cost: kernel ns per unit at the lowest concurrency")
    ax.set_ylabel(f"speedup at concurrency {high} (median)")
    ax.set_title("single-thread cost against scaling, per interpreter")
    ax.legend(fontsize=7)
    return [("single-thread cost against scaling", _svg(fig))]


def _table(headers: list[str], body: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(plain(c))}</td>" for c in cells)
                   + "</tr>" for cells in body)
    return f"<table><tr>{head}</tr>{rows}</table>"


def render(runs: Runs, summary: pd.DataFrame, checks: pd.DataFrame) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>harness report</title>"
             f"<style>{_STYLE}</style></head><body><h1>harness report</h1>"]
    parts.append("<p>Runs: " + ", ".join(html.escape(str(d)) for d in runs.dirs) + "</p>")
    for scenario, rows in summary.groupby("scenario", sort=False):
        keys = runs.requests["scenario"] == scenario
        plots = (_latency_plots(runs.requests[keys])
                 + _timeline_plots(runs.timeline[runs.timeline["scenario"] == scenario],
                                   runs.loop_lag[runs.loop_lag["scenario"] == scenario]
                                   if len(runs.loop_lag) else runs.loop_lag)
                 + _speedup_plot(rows) + _interpreter_plot(rows))
        parts.append(f"<h2>{html.escape(scenario)}</h2><div class='plots'>")
        parts += [f"<figure>{svg}<figcaption>{html.escape(title)}</figcaption></figure>"
                  for title, svg in plots]
        parts.append("</div>")
        for title, headers, body in summary_grid(rows, wide=True):
            parts.append(f"<h3>{html.escape(title)}</h3>{_table(headers, body)}")
        mine = checks[checks["scenario"] == scenario] if len(checks) else checks
        if len(mine):
            failed = mine[mine["status"] == "failed"]
            skipped = mine[mine["status"] == "skipped"]
            parts.append(f"<p>thresholds: {int(mine['passed'].sum())} passed, "
                         f"<span class='fail'>{len(failed)} failed</span>, "
                         f"{int((mine['status'] == 'not applicable').sum())} cells not "
                         "applicable</p>")
            parts += [f"<p class='fail'>FAIL {html.escape(r.backend)} c={r.concurrency} "
                      f"r={r.repetition}: {html.escape(r.threshold)} (actual {r.actual:.4g})</p>"
                      for r in failed.itertuples(index=False)]
            parts += [f"<p>skipped: {html.escape(r.threshold)} (none of its cells ran)</p>"
                      for r in skipped.itertuples(index=False)]
    parts.append("<h2>run metadata</h2>")
    parts += [f"<pre>{html.escape(json.dumps(meta, indent=2))}</pre>" for meta in runs.metadata]
    parts.append("</body></html>")
    return "".join(parts)


def write_report(runs: Runs, summary: pd.DataFrame, checks: pd.DataFrame, path: Path) -> None:
    from harness.core.errors import HarnessError

    page = render(runs, summary, checks)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise HarnessError(f"{path}: --html cannot be written ({exc.strerror})") from None
