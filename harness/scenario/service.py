"""The system under test the harness starts itself (`service:`): a command with placeholders,
its environment, the path that says it is ready, and when it is started anew."""

from __future__ import annotations

import string
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator

from harness.core.errors import brief
from harness.scenario.limits import MAX_ITEMS, Span, StrictModel, as_tuple

# What a `{name}` in the command or an env value becomes, filled by the runner per start.
PLACEHOLDERS = ("port", "python", "mock_url", "postgres_dsn", "cell", "run_id")
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_PATH = r"^/[!-~]*$"
Arg = Annotated[str, Field(min_length=1, max_length=4096)]


def placeholders_in(text: str, quote: bool = True) -> list[str]:
    """The `{name}`s of text (`{{` and `}}` are literal braces); ValueError on a bad one,
    quoting text unless told not to (a secret)."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise ValueError(f"{brief(text)}: {exc}" if quote else str(exc)) from None
    for name in names:
        if name not in PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{name}}} (known: "
                             f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)})")
    return names


def fill(text: str, values: dict[str, str]) -> str:
    """text with its placeholders replaced (validated beforehand by placeholders_in)."""
    return text.format_map(values)


class Service(StrictModel):
    """Started in its own process group before each cell (or once per run), polled at `ready`
    until it answers 2xx, loaded through 127.0.0.1:{port}, stopped with SIGTERM (SIGKILL after
    5 s). Its env values are treated as secrets: never written anywhere."""

    command: Annotated[tuple[Arg, ...], BeforeValidator(as_tuple),
                       Field(min_length=1, max_length=MAX_ITEMS)]
    env: dict[Annotated[str, Field(pattern=ENV_NAME, max_length=256)],
              Annotated[str, Field(max_length=8192)]] = Field(default_factory=dict,
                                                              max_length=MAX_ITEMS)
    ready: str = Field("/", pattern=_PATH, max_length=2048)
    ready_timeout: Span = Field(30_000_000_000, gt=0)
    restart: Literal["per_cell", "per_run"] = "per_cell"
    python: str | None = Field(None, min_length=1, max_length=4096)  # {python}; default: ours
    lag_path: str | None = Field(None, pattern=_PATH, max_length=2048)  # its own loop lag

    @field_validator("command")
    @classmethod
    def _command(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for i, arg in enumerate(value):
            try:
                placeholders_in(arg)
            except ValueError as exc:
                raise ValueError(f"[{i}]: {exc}") from None
        if "port" not in {n for arg in value for n in placeholders_in(arg)}:
            raise ValueError("must pass {port} to the service: the harness picks a free port "
                             "and loads 127.0.0.1:{port}")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            try:
                placeholders_in(text, quote=False)  # a value may be a secret
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return value

    def uses(self, name: str) -> bool:
        """Whether the command or an env value names the placeholder `{name}`."""
        texts = (*self.command, *self.env.values())
        return any(name in placeholders_in(text) for text in texts)
