"""The workflow language as msgspec Structs.

Every Struct is frozen and forbids unknown fields, so a typo in a workflow is an error with
its path rather than a silently ignored key. Node specs live here (not in ``nodes/``) because
the ``Workflow`` type must name their union and ``workflows`` imports no other package of
ours; ``nodes/registry.py`` pairs each spec with its implementation.

Each node spec answers for itself (``NodeBehaviour``): whether it emits links and with which
marker, whether it writes the page's record, whether it needs the browser engine, and its
own semantic checks. ``workflows/semantics.py`` and ``Workflow.has_records`` ask the nodes
rather than testing their types, so a new node type cannot be silently left out of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

import msgspec
from msgspec import Meta

from workflows import paths
from workflows.version import __version__

if TYPE_CHECKING:
    from workflows.checks import Findings, NodeSite

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
SecretName = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]  # secrets.py
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
    # Sent with every request of the execution (both engines); values may name secrets as
    # ${secret:NAME}. Cookies are sent to the hosts in scope only.
    headers: dict[NonEmptyStr, str] = {}
    cookies: dict[NonEmptyStr, str] = {}


class Retries(_Spec, frozen=True):
    """How a page that failed for a passing reason is tried again."""

    max_attempts: PosInt = 3
    backoff_s: NonNegFloat = 1.0


class Webhook(_Spec, frozen=True):
    """Where a signed POST goes when an execution of the workflow ends (docs/webhooks.md)."""

    url: NonEmptyStr

    def check(self, path: str, found: Findings) -> None:
        """An absolute http(s) URL with a host, as start URLs are."""
        from workflows.checks import start_url_error  # validation only: keeps imports light

        found.add(f"{path}.url", start_url_error(self.url))


class SitemapSettings(_Spec, frozen=True):
    """Sitemaps as seeds: their URLs are crawled as start URLs are (index files followed,
    gzip read, ``<lastmod>`` kept on the record)."""

    urls: list[NonEmptyStr] = []
    # Also read the ``Sitemap:`` lines of robots.txt of every start URL's host.
    robots_txt: bool = False
    # The phase sitemap URLs are crawled in. Default: the start phase.
    phase: PhaseName | None = None
    # At most this many URLs taken from the sitemaps of one execution (0: no limit other
    # than max_pages and the server's ceiling).
    max_urls: NonNegInt = 0


class Login(_Spec, frozen=True):
    """Run once per execution before its pages: a form POST (http) or a script in the
    browser. The cookies it ends with are stored with the execution and carried by every
    later request of it, on every worker."""

    url: NonEmptyStr
    # Form fields POSTed (application/x-www-form-urlencoded) to ``url``; values may name
    # secrets as ${secret:NAME}.
    form: dict[NonEmptyStr, str] | None = None
    # Or: JavaScript run in the browser on ``url`` (a function is called, a promise awaited);
    # secrets are passed to it as its argument, an object of name -> value.
    script: NonEmptyStr | None = None
    # The secrets (by name) the script gets in that object; no other is given to it.
    secrets: list[SecretName] = []
    # Login succeeded when the page it ends on matches this CSS selector (optional).
    success_selector: NonEmptyStr | None = None
    timeout_s: PosFloat = 30.0


# A banned proxy rests at most this long: past it, pages waiting for a proxy would wait on
# for hours handed back and forth, which looks like a stalled crawl, not a ban.
MAX_PROXY_COOLDOWN_S = 3600.0


class ProxyBan(_Spec, frozen=True):
    """When a response means the proxy is banned: the page is retried through another
    proxy and this one rests for ``cooldown_s``."""

    statuses: list[Annotated[int, Meta(ge=100, le=599)]] = msgspec.field(
        default_factory=lambda: [403, 407, 429]
    )
    selector: NonEmptyStr | None = None
    cooldown_s: PosFloat = 300.0


class Proxies(_Spec, frozen=True):
    """Proxies requests go through, rotated; credentials as ${secret:NAME}."""

    urls: list[NonEmptyStr] = []
    # A URL answering the proxy list, one proxy URL per line (read at execution start).
    provider_url: NonEmptyStr | None = None
    rotation: Literal["round_robin", "random", "per_host"] = "round_robin"
    ban: ProxyBan = ProxyBan()

    def check(self, path: str, found: Findings) -> None:
        """Proxies to use, each an http proxy whose password names a secret; ban statuses
        that are errors; a selector that parses; a cooldown within bounds."""
        from workflows import proxy_urls  # validation only: keeps imports light
        from workflows.checks import start_url_error
        from workflows.secrets import SECRET_REF

        if not self.urls and self.provider_url is None:
            found.add(path, "give urls, provider_url or both (no proxy to use)")
        for i, url in enumerate(self.urls):
            found.add(paths.index(f"{path}.urls", i), proxy_urls.workflow_url_error(url))
        if self.provider_url is not None:
            shaped = SECRET_REF.sub("secret", self.provider_url)
            found.add(f"{path}.provider_url", start_url_error(shaped))
        for i, status in enumerate(self.ban.statuses):
            if status < 400:
                found.add(
                    paths.index(f"{path}.ban.statuses", i),
                    f"{status} is not an error status (400-599); a page that answers "
                    "200 with a block page is what ban.selector is for",
                )
        if self.ban.selector is not None:
            found.css(f"{path}.ban.selector", self.ban.selector)
        if self.ban.cooldown_s > MAX_PROXY_COOLDOWN_S:
            found.add(
                f"{path}.ban.cooldown_s",
                f"is {self.ban.cooldown_s:g}; at most {MAX_PROXY_COOLDOWN_S:g} seconds",
            )


class RecordSettings(_Spec, frozen=True):
    """What happens to records as a whole."""

    # warn: keep the record and count a missing_required warning; drop: leave it out.
    missing_required: Literal["warn", "drop"] = "warn"


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
    # Text processors applied in order after the value is read (workflows/processors.py):
    # a name (``strip``) or a one-key mapping with its argument (``{replace: [old, new]}``).
    process: list[ProcessorSpec] = []
    # A record whose value of this field is null (or [] or {}) is counted and listed as a
    # ``missing_required`` warning, or dropped (Workflow.records.missing_required).
    # Top-level fields of an extract node only.
    required: bool = False

    def check(self, path: str, found: Findings) -> None:
        """Selectors and regex that parse, one of css and xpath, a sound ``as: object``,
        processors that can run on the value, then the sub-fields."""
        if self.process:
            from workflows.processors import problems  # validation only: keeps imports light

            if self.fields is not None:
                found.add(f"{path}.process", "processors work on text; this field has fields")
            for i, message in problems(self.process, multiple=self.multiple):
                found.add(paths.index(f"{path}.process", i), message)
        if self.css is not None and self.xpath is not None:
            found.add(path, "css and xpath are mutually exclusive; use one")
        if self.css is not None:
            found.css(f"{path}.css", self.css)
        if self.xpath is not None:
            found.xpath(f"{path}.xpath", self.xpath)
        if self.regex is not None:
            found.regex(f"{path}.regex", self.regex)
        if self.as_ == "object":
            if not self.multiple:
                found.add(f"{path}.as", "as: object needs multiple: true")
            keys = sorted(self.fields or ())
            if keys != ["key", "value"]:
                message = "as: object needs fields with exactly the keys key and value"
                found.add(f"{path}.as", f"{message} (got: {', '.join(keys) or 'none'})")
        if self.fields is not None:
            check_fields(self.fields, f"{path}.fields", found)
            for name, sub in self.fields.items():
                if isinstance(sub, Field) and sub.required:
                    message = "only the top-level fields of an extract node can be required"
                    found.add(f"{paths.key(f'{path}.fields', name)}.required", message)


# A bare string is shorthand for {css: "<selector>"}.
FieldSpec = NonEmptyStr | Field
# A text processor: its name, or a one-key mapping of its name to its argument.
ProcessorSpec = NonEmptyStr | dict[NonEmptyStr, Any]


def check_fields(fields: Mapping[str, FieldSpec], path: str, found: Findings) -> None:
    """The semantic checks of every field of ``fields`` (at ``path``), in order."""
    for name, spec in fields.items():
        field_path = paths.key(path, name)
        if isinstance(spec, str):
            found.css(field_path, spec)
        else:
            spec.check(field_path, found)


class NodeBehaviour(Protocol):
    """What every node spec answers for itself; ``workflows/semantics.py`` and
    ``Workflow.has_records`` ask these instead of testing a node's type."""

    @property
    def emits_links(self) -> bool:
        """Whether it adds links for the crawl to follow."""
        ...

    @property
    def link_marker(self) -> str | None:
        """The marker of the links it emits; None when it emits none, or unmarked ones."""
        ...

    @property
    def writes_records(self) -> bool:
        """Whether a phase with this node writes a record for each of its pages."""
        ...

    @property
    def needs_browser(self) -> bool:
        """Whether it runs only in a live page (validation rejects it in an http phase)."""
        ...

    def check(self, site: NodeSite) -> None:
        """Add to ``site.found`` every semantic problem of this node where it stands (the
        engine's is judged by the caller, from ``needs_browser``)."""
        ...


class _Node(_Spec, frozen=True, tag_field="type", weakref=True):
    """Base of the node specs: tagged by ``type``; weakly referenceable, so an implementation
    can keep what it compiles from a spec exactly as long as the spec lives."""


class ExtractNode(_Node, frozen=True, tag="extract"):
    """Adds fields to the page's record."""

    fields: Annotated[dict[NonEmptyStr, FieldSpec], Meta(min_length=1)]

    @property
    def emits_links(self) -> bool:
        return False

    @property
    def link_marker(self) -> str | None:
        return None

    @property
    def writes_records(self) -> bool:
        return True

    @property
    def needs_browser(self) -> bool:
        return False

    def check(self, site: NodeSite) -> None:
        """Every field; one at this level needs a selector, as it has no element of its
        own to read (a nested field without one reads its parent's element)."""
        for name, spec in self.fields.items():
            if isinstance(spec, Field) and spec.css is None and spec.xpath is None:
                site.found.add(
                    paths.key(f"{site.path}.fields", name),
                    "needs css or xpath (only a nested field may leave both out, "
                    "to read its parent's element)",
                )
        check_fields(self.fields, f"{site.path}.fields", site.found)


class ExtractLinksNode(_Node, frozen=True, tag="extract_links"):
    """Emits the links the matched elements point at."""

    selector: NonEmptyStr = "a[href]"
    attr: NonEmptyStr = "href"
    marker: Marker | None = None
    limit: NonNegInt | None = None

    @property
    def emits_links(self) -> bool:
        return True

    @property
    def link_marker(self) -> str | None:
        return self.marker

    @property
    def writes_records(self) -> bool:
        return False

    @property
    def needs_browser(self) -> bool:
        return False

    def check(self, site: NodeSite) -> None:
        site.found.css(f"{site.path}.selector", self.selector)


class FilterNode(_Node, frozen=True, tag="filter"):
    """Drops links emitted before it in the phase, unless they meet every condition given."""

    markers: list[Marker] | None = None
    min_depth: NonNegInt | None = None
    max_depth: NonNegInt | None = None
    include: list[str] = []
    exclude: list[str] = []

    @property
    def emits_links(self) -> bool:
        return False

    @property
    def link_marker(self) -> str | None:
        return None

    @property
    def writes_records(self) -> bool:
        return False

    @property
    def needs_browser(self) -> bool:
        return False

    def check(self, site: NodeSite) -> None:
        """Its markers are emitted before it, its regexes parse, its depths are in order."""
        found = site.found
        for i, marker in enumerate(self.markers or ()):
            if not site.may_emit(marker):
                found.add(
                    f"{site.path}.markers[{i}]",
                    f"no node before this filter emits marker {marker!r} " + site.unemitted(marker),
                )
        found.regexes(f"{site.path}.include", self.include)
        found.regexes(f"{site.path}.exclude", self.exclude)
        found.depths(site.path, self.min_depth, self.max_depth)


class ScriptNode(_Node, frozen=True, tag="script"):
    """Runs JavaScript in the live page (browser engine only): a record value or links."""

    code: NonEmptyStr
    as_: NonEmptyStr | None = msgspec.field(default=None, name="as")
    emit: Literal["value", "links"] = "value"
    marker: Marker | None = None
    limit: NonNegInt | None = None
    timeout_s: PosFloat = 5.0

    @property
    def emits_links(self) -> bool:
        return self.emit == "links"

    @property
    def link_marker(self) -> str | None:
        return self.marker if self.emit == "links" else None

    @property
    def writes_records(self) -> bool:
        return self.emit == "value"

    @property
    def needs_browser(self) -> bool:
        return True

    def check(self, site: NodeSite) -> None:
        """``as`` with ``emit: value`` and only there; ``marker`` and ``limit`` only with
        ``emit: links``."""
        path, found = site.path, site.found
        if self.emit == "value":
            if self.as_ is None:
                found.add(f"{path}.as", "required when emit is value (the record key)")
            for name, value in (("marker", self.marker), ("limit", self.limit)):
                if value is not None:
                    found.add(f"{path}.{name}", "only allowed with emit: links")
        elif self.as_ is not None:
            found.add(f"{path}.as", "only allowed with emit: value")


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


class Workflow(_Spec, frozen=True, kw_only=True):
    """One crawl: where it starts, what it may visit, how fast, and what it does on each
    page."""

    name: Name
    # At least one of start_urls and sitemaps (validation says so).
    start_urls: list[NonEmptyStr] = []
    phases: Annotated[list[Phase], Meta(min_length=1)]
    sitemaps: list[NonEmptyStr] | SitemapSettings | None = None
    engine: Engine = "browser"
    max_depth: NonNegInt = 3
    max_pages: NonNegInt = 0
    scope: Scope = Scope()
    politeness: Politeness = Politeness()
    fetch: FetchSettings = FetchSettings()
    retries: Retries = Retries()
    start_phase: PhaseName | None = None
    webhook: Webhook | None = None
    # first: of the nodes of one page emitting the same URL, the first node's marker wins;
    # every: each distinct marker is a task of its own.
    link_claims: Literal["first", "every"] = "first"
    login: Login | None = None
    proxies: Proxies | None = None
    records: RecordSettings = RecordSettings()

    @property
    def sitemap_settings(self) -> SitemapSettings | None:
        """``sitemaps`` in its long form (the list form is shorthand for its ``urls``)."""
        if self.sitemaps is None:
            return None
        if isinstance(self.sitemaps, list):
            return SitemapSettings(urls=self.sitemaps)
        return self.sitemaps

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
        """Whether pages of this phase write a record: one of its nodes writes one (an
        extract node, a script node with ``emit: value``; docs/workflows.md, "Records")."""
        return any(node.writes_records for node in phase.nodes)
