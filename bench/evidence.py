"""What a benchmark leaves behind: its verdicts, the exit status they give, and RUN/summary.md —
the machine, the CPU pressure before and after, `git describe --dirty`, the date, and every
figure with its target and verdict — small enough to commit under docs/measurements/.

Every target-bearing script (bench.targets, bench.self, bench.pacing, …) judges through this
module: a Verdict per figure, `status(verdicts)` for its exit code, `write_summary` for its file.

Exit codes, one meaning each: 0 every judged target met; 1 a target missed (or, where a script
says so, a target without data); 2 the benchmark could not be set up (a peer missing, bad
arguments); 3 the run under measurement failed (a cell or command failed); 130 interrupted.
`worst` combines steps: 130 > 3 > 2 > 1 > 0.

    python -m bench.evidence publish RUN/summary.md NAME   # → docs/measurements/<date>-NAME.md
    python -m bench.evidence start FILE [COMMAND]  # a sitting's start, for a later summary
    python -m bench.evidence worst CODE...         # exits with the worst of the codes

`start` lets a sitting of several steps (`make bench`: the run, the targets, the report) date
its summary and take its CPU pressure before the first step: `Sitting.load(FILE)` resumes it.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import ROOT, machine

MET, MISSED, NO_SETUP, FAILED, INTERRUPTED = 0, 1, 2, 3, 130
SEVERITY = (INTERRUPTED, FAILED, NO_SETUP, MISSED, MET)  # worst first


@dataclass(frozen=True)
class Verdict:
    """One figure: what it is, what was measured (as shown), its target, and whether it was
    met — None when it is not judged (not run, no target, a --quick run, …); `why` says why
    where the figure alone does not (e.g. "not attainable with this seed")."""
    name: str
    measured: str
    target: str = "-"
    met: bool | None = None
    why: str = ""

    def __post_init__(self) -> None:
        if self.met is not None:  # a NumPy bool is not `False`: status() tests `is False`
            object.__setattr__(self, "met", bool(self.met))

    def shown(self) -> str:
        verdict = "-" if self.met is None else ("met" if self.met else "**missed**")
        return f"{verdict} ({self.why})" if self.why else verdict


def status(verdicts: list[Verdict]) -> int:
    """1 when a judged target was missed, else 0."""
    return MISSED if any(v.met is False for v in verdicts) else MET


def worst(*codes: int) -> int:
    """The worst of several steps' exit codes: 130 > 3 > 2 > 1 > 0 (others count as 3)."""
    known = [code if code in SEVERITY else FAILED for code in codes]
    return min(known, key=SEVERITY.index, default=MET)


def missed(verdicts: list[Verdict]) -> list[str]:
    return [v.name for v in verdicts if v.met is False]


def describe_machine() -> str:
    """CPU model, cores, memory, kernel and Python, on one line."""
    import psutil

    from harness.store.meta import cpu_model

    memory = psutil.virtual_memory().total / 2**30
    python = (f"Python {platform.python_version()} ({platform.python_implementation()}, "
              f"GIL {'disabled' if sysconfig.get_config_var('Py_GIL_DISABLED') else 'enabled'})")
    return (f"{cpu_model()}, {os.cpu_count()} cores, {memory:.0f} GiB memory, "
            f"{platform.system()} {platform.release()}, {python}")


def git_describe() -> str:
    """`git describe --always --dirty` of the clone, or "unknown" outside one."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def pressure() -> str:
    """The machine's CPU pressure, as every summary shows it."""
    return machine.cpu_pressure_text(("avg10", "avg60", "avg300"), "{value:.1f} % ({window})")


class Sitting:
    """One benchmark sitting, for its summary: when it started, the pressure then, the command."""

    def __init__(self, command: str | None = None) -> None:
        self.started = datetime.now(UTC)
        self.pressure_before = pressure()
        self.command = command or " ".join(["python -m", _module_name(), *sys.argv[1:]])

    def save(self, path: Path) -> Path:
        """The sitting's start, for `Sitting.load` in a later step of the same sitting."""
        path.write_text(json.dumps({"started": self.started.isoformat(),
                                    "pressure_before": self.pressure_before,
                                    "command": self.command}))
        return path

    @classmethod
    def load(cls, path: Path) -> Sitting:
        """The sitting `save` wrote (ValueError when the file is not one)."""
        try:
            saved = json.loads(path.read_text())
            sitting = cls.__new__(cls)
            sitting.started = datetime.fromisoformat(saved["started"])
            sitting.pressure_before = str(saved["pressure_before"])
            sitting.command = str(saved["command"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a sitting written by `bench.evidence start` "
                             f"({type(exc).__name__}: {exc})") from None
        return sitting

    def write_summary(self, out: Path, title: str, verdicts: list[Verdict],
                      notes: list[str] = (), extra: str = "", code: int | None = None,
                      code_why: str = "") -> Path:
        """RUN/summary.md: the header lines (machine, commit, date, command, pressure, wall
        time, exit status), notes, the verdict table, and any extra Markdown (e.g. the tables
        as printed). `code`: the exit status when it is not `status(verdicts)` (a failed step,
        a --report-only run), `code_why` saying why."""
        ended = datetime.now(UTC)
        judged = status(verdicts)
        code = judged if code is None else code
        verdict = ("every judged target met" if judged == MET
                   else "missed: " + "; ".join(missed(verdicts)))
        lines = [f"# {title}", "",
                 f"- machine: {describe_machine()}",
                 f"- commit: {git_describe()} (`git describe --always --dirty`)",
                 f"- date: {self.started:%Y-%m-%d}, started {self.started:%H:%M:%S} UTC, "
                 f"ended {ended:%H:%M:%S} UTC",
                 f"- command: `{self.command}`",
                 f"- CPU pressure (`/proc/pressure/cpu`, some): before {self.pressure_before};"
                 f" after {pressure()}",
                 f"- wall time: {(ended - self.started).total_seconds():.0f} s",
                 f"- verdict: {verdict} (exit {code}{': ' + code_why if code_why else ''})"]
        lines += [f"- {note}" for note in notes]
        lines += ["", table(verdicts)]
        if extra:
            lines += ["", extra.rstrip()]
        out.mkdir(parents=True, exist_ok=True)
        path = out / "summary.md"
        path.write_text("\n".join(lines) + "\n")
        return path

    def conclude(self, script: str, title: str, lines: list[str], verdicts: list[Verdict],
                 notes: list[str], out: Path | None = None) -> int:
        """A script's end: its table and verdicts on stdout, its notes on stderr, summary.md
        in its run folder; the exit status (FAILED when a note says a step failed)."""
        code = worst(status(verdicts), FAILED if notes else MET)
        for line in lines + [f"{v.name}: {v.measured} (target {v.target}: {v.shown()})"
                             for v in verdicts]:
            print(line)
        for note in notes:
            print(f"bench.{script}: {note}", file=sys.stderr)
        path = self.write_summary(run_folder(script, out), title, verdicts, notes,
                                  printed(lines), code=code)
        print(f"written: {path}")
        return code


def run_folder(script: str, out: Path | None = None) -> Path:
    """Where a script's summary.md (and anything else it keeps) goes: its --out, else
    results/<script>/<UTC time>/."""
    return out or ROOT / "results" / script / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def printed(lines: list[str]) -> str:
    """Lines a script printed, as a Markdown block for a summary's `extra`."""
    return "\n".join(["```text", *lines, "```"])


def _module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec and spec.name else Path(sys.argv[0]).name


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(verdicts: list[Verdict]) -> str:
    lines = ["| target | measured | bound | met |", "| --- | --- | --- | --- |"]
    lines += [f"| {_cell(v.name)} | {_cell(v.measured)} | {_cell(v.target)} | "
              f"{_cell(v.shown())} |" for v in verdicts]
    return "\n".join(lines)


def publish(summary: Path, name: str, today: str | None = None) -> Path:
    """Copy a run's summary.md to docs/measurements/<UTC date>-NAME.md (never over another)."""
    date = today or datetime.now(UTC).strftime("%Y-%m-%d")
    folder = ROOT / "docs" / "measurements"
    target = folder / f"{date}-{name}.md"
    n = 2
    while target.exists():
        target = folder / f"{date}-{name}-{n}.md"
        n += 1
    shutil.copyfile(summary, target)
    return target


USAGE = """usage: python -m bench.evidence publish RUN/summary.md NAME
       python -m bench.evidence start FILE [COMMAND]
       python -m bench.evidence worst CODE..."""


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip() + "\n\n" + USAGE)
        return MET
    if argv[:1] == ["start"] and len(argv) in (2, 3):
        Sitting(argv[2] if len(argv) == 3 else None).save(Path(argv[1]))
        return MET
    if argv[:1] == ["worst"] and all(re.fullmatch(r"\d+", a) for a in argv[1:]):
        return worst(*map(int, argv[1:]))
    if len(argv) != 3 or argv[0] != "publish" or not Path(argv[1]).is_file():
        print(USAGE, file=sys.stderr)
        return NO_SETUP
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", argv[2]):
        print(f"bench.evidence: NAME {argv[2]!r}: lower-case letters, digits and '-' only",
              file=sys.stderr)
        return NO_SETUP
    print(publish(Path(argv[1]), argv[2]).relative_to(ROOT))
    return MET


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
