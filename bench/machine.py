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
