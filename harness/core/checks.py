"""Response checks (`workload.checks`): what a response must hold beyond its status, tested on
the headers and body bytes every client has already read (no second read). Built once per
cell from plain data; `failed` names the first check a response misses (the row's
`error_detail`, its `error` being `check`), None when it passes them all."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

CHECK = "check"  # the error category of a response that failed a check
_MISSING = object()


@dataclass(frozen=True)
class Checks:
    headers: tuple[tuple[str, str | None, re.Pattern | None], ...] = ()  # (name, exact, regex)
    body_contains: tuple[bytes, ...] = ()
    body_regex: tuple[re.Pattern, ...] = ()
    json: tuple[tuple[tuple[str, ...], object], ...] = ()  # (dotted path's parts, expected)
    max_bytes: int | None = None

    @classmethod
    def from_data(cls, data: dict | None) -> Checks | None:
        """From the scenario's `checks:` as plain data (validated there); None for none."""
        if not data:
            return None
        headers = []
        for name, expected in (data.get("header") or {}).items():
            if isinstance(expected, dict):
                headers.append((name.lower(), None, re.compile(expected["regex"])))
            else:
                headers.append((name.lower(), str(expected), None))
        contains = data.get("body_contains") or ()
        regex = data.get("body_regex") or ()
        return cls(tuple(headers),
                   tuple(s.encode() for s in ([contains] if isinstance(contains, str)
                                              else contains)),
                   tuple(re.compile(s.encode()) for s in ([regex] if isinstance(regex, str)
                                                          else regex)),
                   tuple((tuple(path.split(".")), value)
                         for path, value in (data.get("json") or {}).items()),
                   data.get("max_bytes"))

    def failed(self, header: Callable[[str], str | None], body: bytes) -> str | None:
        """The first check the response misses: `header NAME`, `body_contains`, `body_regex`,
        `json PATH` or `max_bytes`; None when it passes every one."""
        if self.max_bytes is not None and len(body) > self.max_bytes:
            return "max_bytes"
        for name, exact, pattern in self.headers:
            value = header(name)
            if value is None or (exact is not None and value != exact) or (
                    pattern is not None and pattern.search(value) is None):
                return f"header {name}"
        for needle in self.body_contains:
            if needle not in body:
                return "body_contains"
        for pattern in self.body_regex:
            if pattern.search(body) is None:
                return "body_regex"
        if self.json:
            try:
                document = json.loads(body)
            except ValueError:
                return f"json {'.'.join(self.json[0][0])}"
            for path, expected in self.json:
                if _at(document, path) != expected:
                    return f"json {'.'.join(path)}"
        return None


def _at(document: object, path: tuple[str, ...]) -> object:
    """The value at a dotted path (`items.0.id`: a key, then a list index); _MISSING if none."""
    for part in path:
        if isinstance(document, dict) and part in document:
            document = document[part]
        elif isinstance(document, list) and part.isdigit() and int(part) < len(document):
            document = document[int(part)]
        else:
            return _MISSING
    return document
