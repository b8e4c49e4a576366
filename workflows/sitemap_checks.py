"""The semantic checks of ``sitemaps`` (docs/workflows.md, "sitemaps"): what a worker will
fetch must be a URL it can fetch, the phase sitemap pages go to must exist, and there must
be something to read, so that a workflow that would crawl nothing fails validation rather
than completing empty.
"""

from __future__ import annotations

from workflows import checks, paths
from workflows.checks import Findings
from workflows.errors import did_you_mean
from workflows.spec import Workflow


def check_sitemaps(workflow: Workflow, found: Findings) -> None:
    """Every problem of ``workflow.sitemaps``, at its path in either form (a list of URLs is
    ``sitemaps[i]``; the mapping's are ``sitemaps.urls[i]``)."""
    settings = workflow.sitemap_settings
    if settings is None:
        return
    urls_path = "sitemaps" if isinstance(workflow.sitemaps, list) else "sitemaps.urls"
    for i, url in enumerate(settings.urls):
        found.add(paths.index(urls_path, i), checks.start_url_error(url), depends_on=())
    if not settings.urls:
        if not settings.robots_txt:
            found.add("sitemaps", "nothing to read: give urls, or robots_txt: true")
        elif not workflow.start_urls:
            message = (
                "robots_txt reads the robots.txt of the start URLs' sites, and there are "
                "no start_urls nor sitemap urls"
            )
            found.add("sitemaps.robots_txt", message, depends_on=("sitemaps", "start_urls"))
    names = [phase.name for phase in workflow.phases]
    if settings.phase is not None and names and settings.phase not in names:
        message = f"unknown phase {settings.phase!r} (phases: {', '.join(names)})"
        found.add(
            "sitemaps.phase",
            message + did_you_mean(settings.phase, names),
            depends_on=("phases[*].name",),
        )
