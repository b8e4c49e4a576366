"""Link claims: which of the links one page emits become tasks, under ``link_claims``.

Several nodes of one page may emit the same URL, each with its own marker (a listing's
``product`` links and its ``featured`` box). A URL is crawled once per claim key:

- ``first`` (the default): the key is the canonical URL. The first link to it in the
  order the nodes emitted them wins; a later one with another marker is dropped as
  ``duplicate_marker`` (counted in the funnel under its own phase and marker, so a phase
  that gets fewer pages than expected says why), one with the same marker as
  ``duplicate``. Across pages the seen set decides: a URL claimed by an earlier page is
  not new, whatever marker claimed it.
- ``every``: the key is the canonical URL and the marker, so each distinct marker is a task
  of its own: the page is fetched once per marker, in the phase that marker leads to, and
  its record carries that marker.

``claim_links`` is the one judgement of a page's links: the frontier publishes what it
admits and ``trawl preview`` shows the same list, so a preview cannot disagree with the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from workflows.rules import Admit, CrawlRules

LinkClaims = Literal["first", "every"]

# Why a link a page emitted is dropped before the seen set, beside workflows.rules.Drop.
DUPLICATE = "duplicate"  # the same URL and marker, emitted earlier on the page
DUPLICATE_MARKER = "duplicate_marker"  # the same URL, claimed earlier with another marker


class EmittedLink(Protocol):
    """A link as a node emitted it (nodes.context.Link)."""

    @property
    def url(self) -> str: ...
    @property
    def marker(self) -> str | None: ...
    @property
    def depth(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Claim:
    """One link of a page, judged: ``admit`` when it is to be claimed in the seen set, else
    ``dropped`` says why (and ``claimed_by``, for ``duplicate_marker``, which marker won).
    ``url`` is canonical when it could be made so; ``phase`` is where the link goes, or
    would have gone."""

    url: str
    marker: str | None
    depth: int
    phase: str
    admit: Admit | None = None
    dropped: str | None = None
    claimed_by: str | None = None


def claim_key(url: str, marker: str | None, claims: LinkClaims) -> str:
    """The key ``url`` (canonical) is claimed under in the seen set and the task ledger:
    the URL, or under ``every`` the URL and the marker. A canonical URL has no fragment,
    so ``url#marker`` cannot be taken for another URL."""
    if claims == "every" and marker is not None:
        return f"{url}#{marker}"
    return url


def claim_links(rules: CrawlRules, current: str, links: Iterable[EmittedLink]) -> list[Claim]:
    """Judge the links a page of phase ``current`` emitted, in order: the crawl rules, then
    the workflow's ``link_claims`` among the page's own links."""
    claims = rules.workflow.link_claims
    winners: dict[str, str | None] = {}  # claim key -> marker of the link that claimed it
    judged: list[Claim] = []
    for link in links:
        marker = link.marker
        decision = rules.judge(current, link.url, marker, link.depth)
        if not isinstance(decision, Admit):
            phase = rules.phase_for(current, marker, link.url, link.depth)
            judged.append(Claim(link.url, marker, link.depth, phase, dropped=str(decision)))
            continue
        url, phase = decision.url, decision.phase
        key = claim_key(url, marker, claims)
        if key not in winners:
            winners[key] = marker
            judged.append(Claim(url, marker, link.depth, phase, admit=decision))
        elif winners[key] == marker:
            judged.append(Claim(url, marker, link.depth, phase, dropped=DUPLICATE))
        else:
            winner = winners[key]
            judged.append(
                Claim(url, marker, link.depth, phase, dropped=DUPLICATE_MARKER, claimed_by=winner)
            )
    return judged
