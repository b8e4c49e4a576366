"""The workflow language as msgspec Structs.

Every Struct is frozen and forbids unknown fields, so a typo in a workflow is an error with
its path rather than a silently ignored key. Node specs live here (not in ``nodes/``) because
the ``Workflow`` type must name their union and ``workflows`` imports no other package of
ours; ``nodes/registry.py`` pairs each spec with its implementation.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from workflows.version import __version__

Engine = Literal["browser", "http"]
FieldType = Literal["string", "int", "float", "bool", "html"]
WaitUntil = Literal["load", "domcontentloaded", "networkidle"]
ResourceType = Literal[
    "image", "font", "media", "stylesheet", "script", "xhr", "fetch", "websocket", "other"
]

Name = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
PhaseName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$")]
Marker = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")]
NonEmptyStr = Annotated[str, Meta(min_length=1)]
NonNegInt = Annotated[int, Meta(ge=0)]
PosInt = Annotated[int, Meta(ge=1)]
PosFloat = Annotated[float, Meta(gt=0)]
NonNegFloat = Annotated[float, Meta(ge=0)]

DEFAULT_USER_AGENT = f"trawl/{__version__} (+https://github.com/trawl-crawler/trawl)"


class _Spec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every workflow Struct."""


class Scope(_Spec, frozen=True):
    """Which URLs the crawl may visit: allowed hosts, include and exclude patterns, and the
    query parameters that do not make a URL different."""

    allowed_domains: list[NonEmptyStr] = []
    include: list[str] = []
    exclude: list[str] = []
    ignore_query_params: list[NonEmptyStr] = []


class Politeness(_Spec, frozen=True):
    """Per-host limits of one execution, shared by every worker that runs it."""

    requests_per_second: PosFloat = 2.0
    burst: PosInt = 1
    delay_ms: NonNegInt = 0
    max_concurrency_per_host: PosInt = 2
    respect_robots_txt: bool = True


class FetchSettings(_Spec, frozen=True):
    """How a page is requested, in either engine."""

    timeout_s: PosFloat = 30.0
    user_agent: NonEmptyStr = DEFAULT_USER_AGENT
    wait_until: WaitUntil = "domcontentloaded"
    block_resources: list[ResourceType] = msgspec.field(
        default_factory=lambda: ["image", "font", "media"]
    )
    max_body_bytes: PosInt = 10 * 1024 * 1024


class Retries(_Spec, frozen=True):
    """How a page that failed for a passing reason is tried again."""

    max_attempts: PosInt = 3
    backoff_s: NonNegFloat = 1.0


class Field(_Spec, frozen=True):
    """One extracted value: where it is, how to read it, what type it has."""

    css: NonEmptyStr | None = None
    xpath: NonEmptyStr | None = None
    attr: NonEmptyStr | None = None
    type: FieldType = "string"
    regex: str | None = None
    default: Any = None
    multiple: bool = False
    absolute_url: bool = False
    fields: dict[NonEmptyStr, FieldSpec] | None = None
    as_: Literal["object"] | None = msgspec.field(default=None, name="as")


# A bare string is shorthand for {css: "<selector>"}.
FieldSpec = NonEmptyStr | Field


class ExtractNode(_Spec, frozen=True, tag="extract", tag_field="type"):
    """Adds fields to the page's record."""

    fields: Annotated[dict[NonEmptyStr, FieldSpec], Meta(min_length=1)]


class ExtractLinksNode(_Spec, frozen=True, tag="extract_links", tag_field="type"):
    """Emits the links the matched elements point at."""

    selector: NonEmptyStr = "a[href]"
    attr: NonEmptyStr = "href"
    marker: Marker | None = None
    limit: NonNegInt | None = None


class FilterNode(_Spec, frozen=True, tag="filter", tag_field="type"):
    """Drops links emitted before it in the phase, unless they meet every condition given."""

    markers: list[Marker] | None = None
    min_depth: NonNegInt | None = None
    max_depth: NonNegInt | None = None
    include: list[str] = []
    exclude: list[str] = []


class ScriptNode(_Spec, frozen=True, tag="script", tag_field="type"):
    """Runs JavaScript in the live page (browser engine only): a record value or links."""

    code: NonEmptyStr
    as_: NonEmptyStr | None = msgspec.field(default=None, name="as")
    emit: Literal["value", "links"] = "value"
    marker: Marker | None = None
    limit: NonNegInt | None = None
    timeout_s: PosFloat = 5.0


NodeSpec = ExtractNode | ExtractLinksNode | FilterNode | ScriptNode


class When(_Spec, frozen=True):
    """The conditions of a transition; every one given must hold."""

    marker: Marker | None = None
    url: str | None = None
    min_depth: NonNegInt | None = None
    max_depth: NonNegInt | None = None


class Transition(_Spec, frozen=True):
    """Sends the links of its phase that match `when` to the phase `to`."""

    when: When
    to: PhaseName


class Phase(_Spec, frozen=True):
    """A stage of the crawl: the nodes run on each page fetched in it, and the
    transitions that decide where its links go."""

    name: PhaseName
    engine: Engine | None = None
    nodes: list[NodeSpec] = []
    transitions: list[Transition] = []


class Workflow(_Spec, frozen=True):
    """One crawl: where it starts, what it may visit, how fast, and what it does on each
    page."""

    name: Name
    start_urls: Annotated[list[NonEmptyStr], Meta(min_length=1)]
    phases: Annotated[list[Phase], Meta(min_length=1)]
    engine: Engine = "browser"
    max_depth: NonNegInt = 3
    max_pages: NonNegInt = 0
    scope: Scope = Scope()
    politeness: Politeness = Politeness()
    fetch: FetchSettings = FetchSettings()
    retries: Retries = Retries()
    start_phase: PhaseName | None = None

    @property
    def first_phase(self) -> str:
        """The phase start URLs run in."""
        return self.start_phase or self.phases[0].name

    def phase(self, name: str) -> Phase:
        """The phase called ``name`` (validation guarantees it exists)."""
        for phase in self.phases:
            if phase.name == name:
                return phase
        raise KeyError(name)

    def engine_of(self, phase: Phase) -> Engine:
        """A phase's own engine, else the workflow's."""
        return phase.engine or self.engine

    def has_records(self, phase: Phase) -> bool:
        """Whether pages of this phase write a record: it has an extract node, or a
        script node with ``emit: value`` (docs/workflows.md, "Records")."""
        return any(
            isinstance(n, ExtractNode) or (isinstance(n, ScriptNode) and n.emit == "value")
            for n in phase.nodes
        )
