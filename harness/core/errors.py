"""Errors the CLI maps to exit codes in one place (see cli.py)."""

import reprlib

ECHO_LIMIT = 60  # characters of user input echoed back in an error message
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = _repr.maxlong = 4 * ECHO_LIMIT


def brief(value: object, limit: int = ECHO_LIMIT) -> str:
    """repr(value) cut to `limit` characters (the last one an ellipsis): a megabyte string, a
    huge number or a deep list echoed in an error message stays short and on one line."""
    if isinstance(value, str | bytes):
        value = value[: limit + 1]  # never repr a megabyte only to cut it
    try:
        text = _repr.repr(value)
    except ValueError:  # an int too long to convert to a string
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


class HarnessError(Exception):
    """Bad input or an impossible request: one line for the user, exit status 2."""

    exit_code = 2


class ScenarioError(HarnessError):
    """A scenario file that cannot be read or does not validate: `file: field.path: problem`."""

    def __init__(self, path: str, field: str, problem: str):
        self.path, self.field, self.problem = path, field, problem
        shown = path if path.isprintable() else repr(path)[1:-1]  # a newline in a file name
        where = f"{shown}: {field}: " if field else f"{shown}: "
        super().__init__(where + problem)
