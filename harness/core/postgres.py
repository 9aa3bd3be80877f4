"""Which PostgreSQL a `database: postgres` pipeline uses when its scenario names none: the one
place that answers it (the runner's check, the cell's connection, the secrets to keep out of
the output all ask here, so they cannot disagree)."""

from __future__ import annotations

import os
from pathlib import Path

ENV = "HARNESS_POSTGRES_DSN"
# Written by `make postgres` (bench/postgres.py), relative to the working directory as the
# Makefile is: a run started from the clone finds the throwaway cluster without set-up.
FOLDER = Path(".pg")
FILE = FOLDER / "dsn"


def dsn() -> str | None:
    """$HARNESS_POSTGRES_DSN, else the content of .pg/dsn in the working directory, else
    None. An empty value counts as none."""
    found = os.environ.get(ENV)
    if found:
        return found
    try:
        text = FILE.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None
