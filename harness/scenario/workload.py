"""What one request is: the workload models (io, cpu, race, pipeline, fake) and their HTTP
options."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from harness.core.errors import brief
from harness.core.units import parse_size_bytes
from harness.scenario.limits import (
    MAX_ITEMS,
    MAX_NAME,
    MAX_REQUESTS,
    SizeBytes,
    Span,
    Step,
    StrictModel,
    as_tuple,
)


class Timeouts(StrictModel):
    connect: Span = Field(2_000_000_000, gt=0)
    total: Span = Field(30_000_000_000, gt=0)


def _status_set(value: object) -> object:
    """`ok_status: [2xx, 304]` → a sorted tuple of concrete codes."""
    items = value if isinstance(value, (list, tuple)) else [value]
    codes: set[int] = set()
    for item in items:
        if isinstance(item, str) and re.fullmatch(r"[1-5]xx", item):
            base = int(item[0]) * 100
            codes.update(range(base, base + 100))
        elif isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
            codes.add(item)
        else:
            raise ValueError("must be status codes (100-599) or classes like 2xx "
                             f"(got {brief(item)})")
    return tuple(sorted(codes))




MAX_BODY = 64 << 20  # a request body is generated or read once per cell and kept in memory
MAX_HEADERS = 100
Clients = Annotated[tuple[Literal["standard", "lean"], ...], BeforeValidator(as_tuple),
                    Field(min_length=1, max_length=2)]


def _body_size(value: object) -> object:
    if parse_size_bytes(value) > MAX_BODY:
        raise ValueError(f"must be <= 64MiB (got {brief(value)})")
    return value


def _body_kind(value: object) -> str:
    """Which body a value means: its errors are then that kind's alone."""
    if isinstance(value, dict):  # tags unlike any key: an error's path names keys alone
        return "drawn" if "image" in value else "read"
    return "sized"


class BodyFile(StrictModel):
    file: str = Field(min_length=1, max_length=4096)  # read once before the clock starts


class BodyImage(StrictModel):
    """A JPEG of `image` × `image` pixels, drawn once per run from the scenario's seed and
    encoded by the runner before the clock (OpenCV, the `service` extra)."""

    image: int = Field(ge=8, le=4096)


UrlPath = Annotated[str, Field(pattern=r"^/[!-~]*$", max_length=2048)]


class HeaderRegex(StrictModel):
    regex: str = Field(max_length=1024)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value):
        return _pattern(value)


def _pattern(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression ({exc})") from None
    return value


class ResponseChecks(StrictModel):
    """What a response must hold beyond its status (`ok_status`); a miss is the error `check`,
    the row's error_detail naming the check."""

    header: dict[Annotated[str, Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", max_length=256)],
                 Annotated[str, Field(max_length=8192)] | HeaderRegex] = Field(
        default_factory=dict, max_length=MAX_HEADERS)
    body_contains: Annotated[tuple[Annotated[str, Field(min_length=1, max_length=8192)], ...],
                             BeforeValidator(as_tuple), Field(max_length=MAX_ITEMS)] = ()
    body_regex: Annotated[tuple[Annotated[str, Field(min_length=1, max_length=1024)], ...],
                          BeforeValidator(as_tuple), Field(max_length=MAX_ITEMS)] = ()
    # `json` in the file: a model's own attribute name, so the field is json_ here
    json_: dict[Annotated[str, Field(pattern=r"^[^.]+(\.[^.]+)*$", max_length=256)],
                str | int | float | bool | None] = Field(default_factory=dict, alias="json",
                                                         max_length=MAX_ITEMS)
    max_bytes: SizeBytes | None = None

    @field_validator("body_regex")
    @classmethod
    def _regexes(cls, value):
        return tuple(_pattern(item) for item in value)

    @field_validator("header", mode="before")
    @classmethod
    def _header_values(cls, value):
        """A value is the exact text or {regex: PATTERN}: said so here, in one line, rather
        than as two failed alternatives."""
        for name, expected in (value.items() if isinstance(value, dict) else ()):
            if isinstance(expected, dict):
                if set(expected) != {"regex"} or not isinstance(expected["regex"], str):
                    raise ValueError(f"{name}: must be the exact text or {{regex: PATTERN}}")
                try:
                    _pattern(expected["regex"])
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
            elif not isinstance(expected, str):
                raise ValueError(f"{name}: must be the exact text (quoted) or {{regex: PATTERN}}"
                                 f" (got {brief(expected)})")
        return value


class Tls(StrictModel):
    """How the clients speak HTTPS: `ca` (a PEM file) trusted instead of the system's store
    (the mock server's own CA with server.tls), `sni` the server name sent and checked."""

    verify: bool = True
    ca: str | None = Field(None, min_length=1, max_length=4096)
    sni: str | None = Field(None, pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$",
                            max_length=253)

    @model_validator(mode="after")
    def _verified(self):
        if not self.verify and self.ca is not None:  # a CA with no check would be ignored
            raise ValueError("ca: not with verify: false (nothing is checked against it)")
        return self


class _HttpOptions(StrictModel):
    endpoint: str | None = Field(None, max_length=MAX_NAME)
    tls: Tls | None = None
    checks: ResponseChecks | None = None
    timeout: Timeouts = Timeouts()
    ok_status: Annotated[tuple[int, ...], BeforeValidator(_status_set)] = tuple(range(200, 300))
    # standard: aiohttp on the loops, http.client in threads/processes; lean: one small
    # HTTP/1.1 client on httptools everywhere. A list makes it an axis of the cell matrix.
    client: Clients = ("standard",)

    @field_validator("client")
    @classmethod
    def _distinct_clients(cls, value):
        if len(set(value)) != len(value):
            raise ValueError(f"repeated (got {brief(list(value))})")
        return value


Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
Headers = dict[Annotated[str, Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", max_length=256)],
               Annotated[str, Field(pattern=r"^[\t -~]*$", max_length=8192)]]
Body = Annotated[Annotated[Annotated[int, BeforeValidator(parse_size_bytes),
                                     BeforeValidator(_body_size)], Tag("sized")]
                 | Annotated[BodyFile, Tag("read")] | Annotated[BodyImage, Tag("drawn")],
                 Discriminator(_body_kind)]
MAX_MIX = 64  # entries of `workload.requests`
MAX_WEIGHT = 1_000_000


class RequestEntry(StrictModel):
    """One entry of `workload.requests`: what a request drawn to it sends (core.mix draws
    request `seq`'s entry from the seed and `seq`, weighted by `weight`)."""

    name: str | None = Field(None, max_length=MAX_NAME)  # default: `METHOD /path`
    method: Method = "GET"
    path: UrlPath
    headers: Headers = Field(default_factory=dict, max_length=MAX_HEADERS)
    body: Body | None = None
    weight: int = Field(1, ge=1, le=MAX_WEIGHT, strict=True)

    @field_validator("name")
    @classmethod
    def _printable(cls, value):
        if value is not None and not re.fullmatch(r"[!-~]+( [!-~]+)*", value):
            raise ValueError("must be printable ASCII, words apart by one space (got "
                             f"{brief(value)})")
        return value

    @field_validator("body")
    @classmethod
    def _no_image(cls, value):
        if isinstance(value, BodyImage):
            raise ValueError("image: not in a requests entry (a sized body or a file)")
        return value

    @property
    def label(self) -> str:
        return self.name if self.name is not None else f"{self.method} {self.path}"


SINGLE_KEYS = ("path", "method", "headers", "body")


class IoWorkload(_HttpOptions):
    """One HTTP request to an endpoint of the mock server, or to `path` of an external
    `target` or of the `service` the harness starts (a list of paths: one cell each)."""

    type: Literal["io", "http"] = "io"
    path: Annotated[tuple[UrlPath, ...], BeforeValidator(as_tuple),
                    Field(min_length=1, max_length=MAX_ITEMS)] | None = None
    method: Method = "GET"
    headers: Headers = Field(default_factory=dict, max_length=MAX_HEADERS)
    body: Body | None = None
    # a mix instead of one request: each request sends one entry, drawn from (seed, seq)
    requests: tuple[RequestEntry, ...] | None = Field(None, max_length=MAX_MIX)
    has_cpu_step: ClassVar[bool] = False

    @field_validator("path")
    @classmethod
    def _distinct_paths(cls, value):
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"repeated (got {brief(list(value))})")
        return value

    @field_validator("requests")
    @classmethod
    def _some_requests(cls, value):
        if value == ():  # here, not min_length: that also counts a list whose entries failed
            raise ValueError("must not be empty")
        return value

    @property
    def mix(self) -> tuple[RequestEntry, ...]:
        """The entries of `requests`; empty for a single request."""
        return self.requests or ()


class CpuWorkload(StrictModel):
    """`cpu`: a pure-Python kernel that holds the GIL; `cpu_release`: C-level hashing that
    releases it. Sized in work units, calibrated at the start of each run to `duration`."""

    type: Literal["cpu", "cpu_release"]
    duration: Step = Field(20_000_000, gt=0)
    has_cpu_step: ClassVar[bool] = True


class RaceWorkload(StrictModel):
    """Each request increments a shared counter: read, switch point, write."""

    type: Literal["race"]
    variants: Annotated[tuple[Literal["no-lock", "lock"], ...], BeforeValidator(
        lambda v: v if isinstance(v, (list, tuple)) else [v])] = ("no-lock", "lock")
    has_cpu_step: ClassVar[bool] = False


class PipelineWorkload(_HttpOptions):
    """The inference service: CPU pre-processing of a generated image (NumPy), a call to the
    mock server's inference endpoint, a write of the result to a database."""

    type: Literal["pipeline"]
    image: int = Field(256, ge=8, le=4096)  # side in pixels of the generated RGB image
    database: Literal["sqlite", "postgres"] = "sqlite"
    dsn: str | None = Field(None, max_length=1024)  # postgres only; default: core.postgres.dsn()
    has_cpu_step: ClassVar[bool] = True

    @model_validator(mode="after")
    def _needs_endpoint(self):
        if self.endpoint is None:
            raise ValueError("workload.endpoint: required (the inference endpoint to POST to)")
        return self


class FakeWorkload(StrictModel):
    """For testing the harness itself: each request sleeps `duration`; on a seq in `raise_on`
    it raises, on a seq in `exit_on` the process running it is killed (SIGKILL)."""

    type: Literal["fake"]
    duration: Step = Field(1_000_000, ge=0)
    raise_on: Annotated[tuple[Annotated[int, Field(ge=0, lt=MAX_REQUESTS)], ...],
                        BeforeValidator(as_tuple), Field(max_length=MAX_ITEMS)] = ()
    exit_on: Annotated[tuple[Annotated[int, Field(ge=0, lt=MAX_REQUESTS)], ...],
                       BeforeValidator(as_tuple), Field(max_length=MAX_ITEMS)] = ()
    has_cpu_step: ClassVar[bool] = False


def _default_type(value: object) -> object:
    if isinstance(value, dict) and "type" not in value:
        return {"type": "io", **value}
    return value


Workload = Annotated[
    IoWorkload | CpuWorkload | RaceWorkload | PipelineWorkload | FakeWorkload,
    Field(discriminator="type"), BeforeValidator(_default_type),
]


