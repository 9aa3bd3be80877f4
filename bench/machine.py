"""How shared the machine was while a benchmark ran: its CPU pressure (Linux PSI, the share of
time some task waited for a CPU), printed beside the figures it may have moved."""

from __future__ import annotations


def cpu_pressure() -> dict[str, float] | None:
    """The `some` line of /proc/pressure/cpu — avg10, avg60, avg300 in % — or None where the
    kernel has none."""
    try:
        with open("/proc/pressure/cpu") as file:
            fields = dict(kv.split("=") for kv in file.readline().split()[1:])
        return {window: float(fields[window]) for window in ("avg10", "avg60", "avg300")}
    except (OSError, KeyError, ValueError):
        return None


def cpu_pressure_text(windows: tuple[str, ...] = ("avg60",), form: str = "{value:.2f} %",
                      unknown: str | None = "unknown") -> str | None:
    """The pressure as a benchmark prints it: each window in `windows` written by `form` (its
    fields: window, value), joined by commas; `unknown` where the kernel has none."""
    found = cpu_pressure()
    if found is None:
        return unknown
    return ", ".join(form.format(window=w, value=found[w]) for w in windows)
