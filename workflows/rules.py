"""The pure crawl rules: which links are followed, at what depth, in which phase.

Everything here is a function of the workflow and the link; the seen-set and page counts
live in the runtime, which asks ``CrawlRules.judge`` first and then its own state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from workflows import regex
from workflows.scope import Sites
from workflows.spec import Transition, Workflow
from workflows.urls import BadUrl, canonicalize


class Drop(enum.StrEnum):
    """Why a link is not followed; the names appear in counters and summaries."""

    BAD_URL = "bad_url"
    OUT_OF_SCOPE = "out_of_scope"
    TOO_DEEP = "too_deep"


@dataclass(frozen=True, slots=True)
class Admit:
    """A link that passes the rules: canonical URL, the phase it runs in, its depth."""

    url: str
    phase: str
    depth: int
    marker: str | None


@dataclass(frozen=True, slots=True)
class _CompiledTransition:
    to: str
    marker: str | None
    url: regex.Pattern | None
    min_depth: int | None
    max_depth: int | None

    def matches(self, marker: str | None, url: str, depth: int) -> bool:
        if self.marker is not None and marker != self.marker:
            return False
        if self.url is not None and not self.url.search(url):
            return False
        if self.min_depth is not None and depth < self.min_depth:
            return False
        return self.max_depth is None or depth <= self.max_depth


def _compile_transition(t: Transition) -> _CompiledTransition:
    w = t.when
    return _CompiledTransition(
        to=t.to,
        marker=w.marker,
        url=regex.compile_pattern(w.url) if w.url is not None else None,
        min_depth=w.min_depth,
        max_depth=w.max_depth,
    )


VERDICT_CACHE_SIZE = 16_384  # raw link URL -> canonical URL or Drop, per execution


class CrawlRules:
    """A workflow's rules, compiled once per execution."""

    def __init__(self, workflow: Workflow) -> None:
        self._verdicts: dict[str, str | Drop] = {}
        self.workflow = workflow
        scope = workflow.scope
        self.ignore_query_params = tuple(scope.ignore_query_params)
        sitemaps = workflow.sitemap_settings
        seeds = [*workflow.start_urls, *(sitemaps.urls if sitemaps is not None else ())]
        # The sites a URL may be on (workflows/scope.py): by default the seeds' origins.
        self.sites = Sites.of(scope.allowed_domains, seeds)
        self._include = [regex.compile_pattern(p) for p in scope.include]
        self._exclude = [regex.compile_pattern(p) for p in scope.exclude]
        self._transitions = {
            p.name: [_compile_transition(t) for t in p.transitions] for p in workflow.phases
        }

    def canonical(self, url: str) -> str:
        """The canonical URL under this workflow's ignored query parameters (raises BadUrl)."""
        return canonicalize(url, self.ignore_query_params)

    def in_scope(self, canonical_url: str) -> bool:
        """On an allowed site, matches an include pattern (if any), matches no exclude
        pattern."""
        if not self.sites.allows(canonical_url):
            return False
        if self._include and not any(p.search(canonical_url) for p in self._include):
            return False
        return not any(p.search(canonical_url) for p in self._exclude)

    def phase_for(self, current: str, marker: str | None, url: str, depth: int) -> str:
        """The ``to`` of the first matching transition of ``current``, else ``current``."""
        for t in self._transitions.get(current, ()):
            if t.matches(marker, url, depth):
                return t.to
        return current

    def judge(self, current: str, url: str, marker: str | None, depth: int) -> Admit | Drop:
        """Decide a link emitted on a page of phase ``current``; ``depth`` is the link's."""
        if depth > self.workflow.max_depth:
            return Drop.TOO_DEEP
        verdict = self._verdicts.get(url)
        if verdict is None:
            verdict = self._verdict(url)
        if isinstance(verdict, Drop):
            return verdict
        return Admit(verdict, self.phase_for(current, marker, verdict, depth), depth, marker)

    def _verdict(self, url: str) -> str | Drop:
        """The canonical URL if in scope, else why not; remembered, since a site links to
        the same pages from every page (nav bars), and parsing URLs is the costly part."""
        try:
            canonical = self.canonical(url)
        except BadUrl:
            verdict: str | Drop = Drop.BAD_URL
        else:
            verdict = canonical if self.in_scope(canonical) else Drop.OUT_OF_SCOPE
        if len(self._verdicts) >= VERDICT_CACHE_SIZE:
            self._verdicts.clear()  # bounded memory; refilled by the next pages
        self._verdicts[url] = verdict
        return verdict

    def start(self, url: str) -> Admit | Drop:
        """Decide a start URL: depth 0, no marker, the start phase."""
        try:
            canonical = self.canonical(url)
        except BadUrl:
            return Drop.BAD_URL
        if not self.in_scope(canonical):
            return Drop.OUT_OF_SCOPE
        return Admit(canonical, self.workflow.first_phase, 0, None)
