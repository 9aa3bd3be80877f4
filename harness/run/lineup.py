"""Each scenario's interpreters, found and ready before anything runs: their workers by
`python` key, the mock server's, and the cells they plan (a cell whose library has no wheel
under its interpreter skipped, with a note). Every failure here is bad input (exit 2) and
comes before the run folder exists."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from harness.core.errors import HarnessError
from harness.core.keys import CellKey
from harness.core.secrets import scrub
from harness.run.pythons import Finder, Interpreter, resolve_all
from harness.run.workers import Worker, needs, prepare, server_needs
from harness.scenario.model import LoadedScenario, plan_cells


@dataclass
class Lineup:
    workers: dict[str, Worker]  # by `python` key, in the order named
    server: Worker | None = None  # the mock server's, when server.python names one
    notes: list[str] = field(default_factory=list)

    def plan(self, item: LoadedScenario, backends=None, repeat=None,
             note: Callable[[str], None] = lambda line: None,
             cores: int | None = None) -> list[CellKey]:
        """The scenario's cells under every interpreter, less those it cannot run (each
        kind of those said once, to `note` and in `notes`)."""
        planned = plan_cells(item.scenario, backends or None, repeat, cores,
                             pythons=tuple(self.workers))
        cells, missing = [], {}
        for key in planned:
            lacking = self.workers[key.python].missing(needs(key, item.scenario))
            if lacking:
                what = key.backend if key.backend == "uvloop" and lacking == ["uvloop"] else (
                    f"{key.backend} with the {key.client} client")
                missing.setdefault((key.python, lacking[0]), set()).add(what)
            else:
                cells.append(key)
        for (python, module), what in missing.items():
            why = self.workers[python].why(module)
            line = (f"python {python}: {module} is not installed under it ({why}): "
                    f"{', '.join(sorted(what))} skipped")
            self.notes.append(line)
            note(scrub(f"{item.scenario.name}: {line}"))
        return cells

    def facts(self) -> dict:
        """For the run metadata: each interpreter (full version, build flags, the packages
        its cells had) and the notes; a spec read from the environment (`${NAME}`) is a
        secret like any other value read there."""
        return _scrubbed({
            "interpreters": [{**w.interpreter.facts(), "python": w.python,
                              "packages": w.installed} for w in self.workers.values()],
            "server_python": None if self.server is None else self.server.interpreter.tag,
            "notes": list(self.notes)})


def _scrubbed(value):
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    return value


def line_up(loaded: list[LoadedScenario], pythons: tuple[str, ...] = (),
            note: Callable[[str], None] = lambda line: None,
            finder: Finder | None = None) -> dict[str, Lineup]:
    """Per scenario name. `pythons`: --python, replacing every scenario's `interpreters:`."""
    finder = finder or Finder()
    ready: dict[tuple, Worker] = {}
    said = note
    note = lambda line: said(scrub(line))  # noqa: E731 - a spec may be a ${NAME} value
    owners: dict[str, Interpreter] = {}

    def worker(interpreter: Interpreter) -> Worker:
        # one python key, one interpreter, in the whole run: the key names its environment
        other = owners.setdefault(interpreter.tag, interpreter)
        if other.identity != interpreter.identity:
            raise HarnessError(f"python {interpreter.tag} names two interpreters in this run "
                               f"({other.executable} and {interpreter.executable}): name one "
                               "of them by its path in every scenario")
        key = (interpreter.identity, interpreter.tag)
        if key not in ready:
            ready[key] = prepare(interpreter, finder.root, note)
        return ready[key]

    found: dict[str, tuple[list[Interpreter], list[str], Interpreter | None]] = {}
    for item in loaded:  # every name resolved before any environment is built
        path = str(item.path).replace("{", "{{").replace("}", "}}")  # a label template
        where = "--python {text}" if pythons else f"{path}: interpreters[{{i}}]"
        chosen, notes = resolve_all(pythons or item.scenario.interpreters, where, finder)
        server = item.scenario.server
        own = None
        if server is not None and server.python is not None:
            own = resolve_all((server.python,), f"{item.path}: server.python", finder)[0][0]
        found[item.scenario.name] = chosen, notes, own
    lineups = {}
    for item in loaded:
        name = item.scenario.name
        chosen, notes, own = found[name]
        for line in notes:
            note(f"{name}: {line}")
        server = None
        if own is not None:
            server = worker(own)
            check_server(server, item, f"{item.path}: server.python")
        lineups[name] = Lineup({i.tag: worker(i) for i in chosen}, server, list(notes))
    return lineups


def check_server(server: Worker, item: LoadedScenario, where: str) -> None:
    """The mock server's imports are there under its interpreter, or bad input."""
    lacking = server.missing(server_needs(item.scenario.server))
    if lacking:
        raise HarnessError(f"{where}: the mock server needs {lacking[0]}, which has no wheel "
                           f"for python {server.interpreter.tag}")
