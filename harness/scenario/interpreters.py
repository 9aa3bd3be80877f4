"""Interpreter specs: what `interpreters:`, `server.python` and `--python` may name.

A spec is a version (`3.12`; `3.14t` for a free-threaded build), a path to an interpreter
(anything with a `/`), `current` (the one running harness, whatever its version: what a
scenario that ships names beside others), `ft` (the project's own free-threaded build, `make
python-ft`) or `ft-gil` (that binary with `PYTHON_GIL=1`: the build's own cost told apart from
the GIL's).
A trailing `?` makes it optional: a run skips it with one line when it is absent. Finding the
interpreter a spec names is the runner's job (harness.run.pythons); this is syntax only."""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.core.errors import brief

MAX_INTERPRETERS = 8
_VERSION = re.compile(r"3\.(\d{1,2})(t?)")


@dataclass(frozen=True)
class Spec:
    text: str  # as written, `?` included
    version: str | None = None  # "3.12" for a version spec
    free_threaded: bool = False  # `3.14t`, `ft`, `ft-gil`
    own: bool = False  # `ft` / `ft-gil`: the build in the project's .pythons/
    gil: bool = False  # `ft-gil`: the GIL forced on
    path: str | None = None
    optional: bool = False
    current: bool = False  # the interpreter running harness

    @property
    def name(self) -> str:
        """The spec without its `?`."""
        return self.text.removesuffix("?")


def parse_spec(text: object) -> Spec:
    """A Spec, or ValueError saying what is wrong in one line."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"an interpreter is a version (3.12, 3.14t), a path, current, ft or "
                         f"ft-gil (got {brief(text)})")
    text = text.strip()
    name, optional = text.removesuffix("?"), text.endswith("?")
    if "/" in name:
        return Spec(text, path=name, optional=optional)
    if name == "current":
        return Spec(text, current=True, optional=optional)
    if name in ("ft", "ft-gil"):
        return Spec(text, free_threaded=True, own=True, gil=name == "ft-gil",
                    optional=optional)
    match = _VERSION.fullmatch(name)
    if match is None:
        raise ValueError(f"unknown interpreter {brief(text)}: give a version (3.12, 3.14t), "
                         "a path (/usr/bin/python3.12), current, ft or ft-gil, with ? if "
                         "optional")
    if int(match.group(1)) < 11:
        raise ValueError(f"interpreter {brief(text)}: harness cells need Python >= 3.11")
    return Spec(text, version=f"3.{int(match.group(1))}", free_threaded=bool(match.group(2)),
                optional=optional)


def as_spec_text(value: object) -> object:
    """YAML reads an unquoted 3.12 as a number: taken as the version it spells, where the
    number can only be that version (3.10 and 3.20 read as 3.1 and 3.2: quote them)."""
    if isinstance(value, float) and not isinstance(value, bool):
        text = repr(value)
        if not re.fullmatch(r"3\.\d\d", text):
            raise ValueError(f"YAML reads this version as the number {text}: quote it "
                             f'("3.10")')
        return text
    return value


def parse_specs(texts) -> tuple[Spec, ...]:
    """Several specs; the same one twice is an error (two that name one interpreter in
    different words are found out when they are resolved)."""
    specs = tuple(parse_spec(text) for text in texts)
    names = [spec.name for spec in specs]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"interpreter {brief(name)} named twice")
    if len(specs) > MAX_INTERPRETERS:
        raise ValueError(f"at most {MAX_INTERPRETERS} interpreters (got {len(specs)})")
    return specs
