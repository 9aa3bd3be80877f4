"""Secrets: one rule for every place one can enter a run. A DSN's password (libpq key=value or
URL form), the value of a request header whose name says it carries a credential, and every
value read through `${NAME}` from the environment reach the code that uses them and nothing
that is written: results, reports, logs and error messages get `***` instead.

`scrub` is the last line of defence for text that may quote a secret (a driver's error, a
traceback): it replaces each secret this process has seen, whole or cut short by an ellipsis
or a quote, as messages cut long values."""

from __future__ import annotations

import json
import re
import sys
import traceback
from collections.abc import Callable, Iterable
from urllib.parse import unquote

MASK = "***"
# Shorter secrets are too short to look for in unrelated text (every "a" is not the password
# "a"): they are redacted in their own field only.
MIN_SEARCHED = 4

# ---- request headers -------------------------------------------------------------------------

SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
SECRET_WORDS = ("token", "secret", "password", "key")


def is_secret_header(name: str) -> bool:
    """Authorization, Proxy-Authorization, Cookie, or any name containing token, secret,
    password or key (case-insensitive): X-Api-Key, X-Auth-Token, ..."""
    lower = name.lower()
    return lower in SECRET_HEADERS or any(word in lower for word in SECRET_WORDS)


# ---- connection strings ----------------------------------------------------------------------

_SECRET_KEYS = frozenset({"password", "sslpassword"})
_URL = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.-]*://")


def _kv_spans(dsn: str) -> list[tuple[str, int, int, str]]:
    """libpq's key=value form, read as libpq reads it (keyword, optional spaces, `=`, optional
    spaces, a value up to the next space or in single quotes; a backslash escapes the next
    character in both): (keyword, start, end, value) per setting, the span being the value as
    written (quotes included). Never fails: malformed input ends a value at the end."""
    found = []
    i, n = 0, len(dsn)
    while i < n:
        while i < n and dsn[i].isspace():
            i += 1
        start = i
        while i < n and dsn[i] != "=" and not dsn[i].isspace():
            i += 1
        key = dsn[start:i]
        while i < n and dsn[i].isspace():
            i += 1
        if i >= n or dsn[i] != "=":
            continue  # libpq refuses it; nothing is a value here
        i += 1
        while i < n and dsn[i].isspace():
            i += 1
        start, chars = i, []
        quoted = i < n and dsn[i] == "'"
        i += quoted
        while i < n:
            char = dsn[i]
            if char == "\\" and i + 1 < n:
                chars.append(dsn[i + 1])
                i += 2
                continue
            if (quoted and char == "'") or (not quoted and char.isspace()):
                break
            chars.append(char)
            i += 1
        i += quoted and i < n  # the closing quote
        found.append((key, start, i, "".join(chars)))
    return found


def _url_spans(dsn: str) -> list[tuple[int, int, str]]:
    """The URL form: the password of the userinfo and of `password=`/`sslpassword=` query
    parameters, as (start, end, value the driver reads). The userinfo is taken up to the last
    `@`, so a password holding a raw `@`, `/`, `?` or `:` is covered whichever way a driver
    splits it (libpq stops at the first `@`, urllib at the last)."""
    head = _URL.match(dsn)
    found = []
    rest = head.end()
    at = dsn.rfind("@", rest)
    if at >= 0:
        colon = dsn.find(":", rest, at)
        if colon >= 0:
            found.append((colon + 1, at, unquote(dsn[colon + 1:at])))
    query = dsn.find("?", rest)
    if query >= 0:
        pos = query + 1
        for part in dsn[query + 1:].split("&"):
            key, eq, value = part.partition("=")
            if eq and unquote(key).lower() in _SECRET_KEYS:
                start = pos + len(key) + 1
                found.append((start, start + len(value), unquote(value)))
            pos += len(part) + 1
    return found


def _password_spans(dsn: str) -> list[tuple[int, int, str]]:
    if _URL.match(dsn):
        return _url_spans(dsn)
    return [(start, end, value) for key, start, end, value in _kv_spans(dsn)
            if key.lower() in _SECRET_KEYS]


def dsn_secrets(dsn: str) -> list[str]:
    """The password(s) of a DSN both as written in it and as the driver reads them
    (unescaped, percent-decoded)."""
    found = []
    for start, end, value in _password_spans(dsn):
        found += [dsn[start:end], value, dsn[start:end].strip("'")]
    return [s for s in dict.fromkeys(found) if s]


def redact_dsn(dsn: str, keep: Callable[[str], bool] = lambda written: False) -> str:
    """The DSN with each password replaced by ***, unless `keep(password as written)`."""
    spans = sorted((s, e) for s, e, _ in _password_spans(dsn) if e > s and not keep(dsn[s:e]))
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    for start, end in reversed(merged):
        dsn = dsn[:start] + MASK + dsn[end:]
    return dsn


# ---- ${NAME} ---------------------------------------------------------------------------------

# `$${` is a literal `${`; `${NAME}` a reference; any other `${` is a mistake, not left as is.
_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")


class UnreadableReference(ValueError):
    """A `${...}` that cannot be read: `name` is None for a malformed reference."""

    def __init__(self, name: str | None, message: str) -> None:
        super().__init__(message)
        self.name = name


def has_reference(value: str) -> bool:
    return any(m[0] != "$${" for m in _REFERENCE.finditer(value))


def interpolate(value: str, lookup: Callable[[str], str | None]) -> tuple[str, list[str]]:
    """`value` with each `${NAME}` replaced by lookup(NAME) and `$${` by `${`; also the values
    read. UnreadableReference when a variable is unset (lookup gives None) or a `${` is
    malformed."""
    used: list[str] = []

    def replace(match: re.Match) -> str:
        if match[0] == "$${":
            return "${"
        name = match[1]
        if name is None:
            raise UnreadableReference(None, "`${` must open a reference ${NAME} (letters, digits "
                                        "and _); write $${ for a literal ${")
        found = lookup(name)
        if found is None:
            raise UnreadableReference(name, f"${{{name}}}: environment variable {name} is not set")
        used.append(found)
        return found

    if "${" not in value:
        return value, used
    return _REFERENCE.sub(replace, value), used


# ---- scrubbing -------------------------------------------------------------------------------

_KNOWN: set[str] = set()


def remember(values: Iterable[str]) -> None:
    """Secrets this process holds: `scrub` removes them from any text."""
    _KNOWN.update(v for v in values if v)


def spellings(secret: str) -> set[str]:
    """How a secret can appear in text: as is, inside a repr, inside JSON."""
    return {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1],
            json.dumps(secret, ensure_ascii=False)[1:-1]} - {""}


_CUT = re.compile("…|['\"]|\\Z")
MAX_CUT = 120  # characters of a secret's start looked for before a cut


def _cut_short(text: str, spelling: str) -> str:
    """Replace the start of `spelling` (three characters or more) where text cuts it short."""
    for match in reversed(list(_CUT.finditer(text))):
        pos = match.start()
        for k in range(min(len(spelling) - 1, MAX_CUT, pos), 2, -1):
            if text.endswith(spelling[:k], 0, pos):
                text = text[:pos - k] + MASK + text[pos:]
                break
    return text


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every secret (those remembered and `secrets`) of at least MIN_SEARCHED
    characters replaced by ***: whole, or cut short (followed by an ellipsis, a quote or the
    end of the text), as brief() and messages that cut long values leave it."""
    for secret in sorted(_KNOWN.union(secrets), key=len, reverse=True):
        if len(secret) < MIN_SEARCHED:
            continue
        for spelling in sorted(spellings(secret), key=len, reverse=True):
            text = _cut_short(text.replace(spelling, MASK), spelling)
    return text


def print_crash(secrets: Iterable[str] = ()) -> None:
    """The exception being handled, with its traceback, scrubbed, on stderr (a driver's error
    may quote its connection string)."""
    sys.stderr.write(scrub(traceback.format_exc(), secrets))
    sys.stderr.flush()
