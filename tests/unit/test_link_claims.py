"""``link_claims``: two nodes of one page emitting the same URLs with different markers.

A listing offers six items; a "featured" box on it links to three of them again. The
workflow sends featured links to a ``featured`` phase and product links to a ``product``
phase, the featured node running first. ``trawl preview`` of the listing must show exactly
what ``trawl run`` then does, records and funnel, under both rules:

- ``first``: items 1-3 are crawled once, as featured; their product links are dropped as
  ``duplicate_marker`` (claimed by ``featured``), and the funnel counts them;
- ``every``: items 1-3 are crawled under both markers, in both phases.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends.clock import FakeClock
from backends.memory import MemorySeenSet, MemoryStateStore, MemoryTaskQueue
from backends.state import Execution, TaskResult
from backends.task import Task
from nodes.context import Link
from tests.claims_site import PagesSite, page
from tests.crawling import make_workflow
from trawl.cli import main
from trawl.local_outputs import execution_dir, exported_records
from worker.context import ExecutionContext
from worker.frontier import Frontier

ITEMS = range(1, 7)
FEATURED = range(1, 4)

WORKFLOW = """\
name: link-claims
start_urls: ["{start}"]
engine: http
max_depth: 1
politeness:
  {{requests_per_second: 500, burst: 50, max_concurrency_per_host: 8, respect_robots_txt: false}}
retries: {{max_attempts: 3, backoff_s: 0.01}}
start_phase: listing
phases:
  - name: listing
    nodes:
      - {{type: extract_links, selector: ".featured a", marker: featured}}
      - {{type: extract_links, selector: ".products a", marker: product}}
    transitions:
      - {{when: {{marker: featured}}, to: featured}}
      - {{when: {{marker: product}}, to: product}}
  - name: featured
    nodes: [{{type: extract, fields: {{title: h1}}}}]
  - name: product
    nodes: [{{type: extract, fields: {{title: h1}}}}]
"""


@pytest.fixture
def shop() -> Iterator[PagesSite]:
    site = PagesSite()
    with site:
        links = [("featured", f"/item/{n}") for n in FEATURED]
        links += [("products", f"/item/{n}") for n in ITEMS]
        site.pages["/"] = page("Listing", *links)
        for n in ITEMS:
            site.pages[f"/item/{n}"] = page(f"Item {n}")
        # Item 2 fails once: under `every` two tasks share its URL, and both must finish.
        site.fail_first["/item/2"] = 1
        yield site


def write_workflow(tmp_path: Path, site: PagesSite) -> Path:
    path = tmp_path / "claims.yaml"
    path.write_text(WORKFLOW.format(start=site.url("/")), encoding="utf-8")
    return path


def preview_links(
    workflow: Path, site: PagesSite, claims: str, capsys: pytest.CaptureFixture[str]
) -> list[dict[str, Any]]:
    argv = ["preview", str(workflow), site.url("/"), "--set", f"link_claims={claims}"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    links: list[dict[str, Any]] = report["links"]
    return links


def run(
    workflow: Path, out: Path, claims: str, capsys: pytest.CaptureFixture[str]
) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    argv = ["run", str(workflow), "--out", str(out), "--set", f"link_claims={claims}"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    run_dir = execution_dir(str(out))
    summary = json.loads((run_dir / "export" / "summary.json").read_text(encoding="utf-8"))
    return exported_records(run_dir), summary, err


def expected_from_preview(
    links: list[dict[str, Any]],
) -> tuple[set[tuple[str, str, str]], dict[str, dict[str, int]]]:
    """What the preview says the run will do: the (url, phase, marker) of every page it
    crawls from the listing (plus the listing itself), and the funnel of the links."""
    kept = {(link["url"], link["phase"], link["marker"]) for link in links if "dropped" not in link}
    funnel: dict[str, Counter[str]] = {}
    for link in links:
        row = funnel.setdefault(f"{link['phase']}|{link['marker']}", Counter())
        row["discovered"] += 1
        row["in_scope"] += 1
        if link.get("dropped") == "duplicate_marker":
            row["duplicate_marker"] += 1
        else:
            row["new"] += 1
            row["fetched"] += 1
            row["extracted"] += 1
    return kept, {row: dict(counts) for row, counts in funnel.items()}


def crawled(records: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(r["url"], r["phase"], r["marker"]) for r in records if r["phase"] != "listing"}


def links_funnel(summary: dict[str, Any]) -> dict[str, dict[str, int]]:
    funnel: dict[str, dict[str, int]] = summary["funnel"]
    return {row: stages for row, stages in funnel.items() if not row.startswith("listing|")}


def test_first_claim_wins_and_the_loser_is_counted_preview_equals_run(
    shop: PagesSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workflow = write_workflow(tmp_path, shop)

    links = preview_links(workflow, shop, "first", capsys)

    # The preview: featured links win items 1-3; the product links to them are dropped,
    # saying why and which marker claimed them.
    by_marker = {(link["marker"], link["url"]): link for link in links}
    for n in FEATURED:
        url = shop.url(f"/item/{n}")
        assert by_marker[("featured", url)] == {
            "url": url,
            "marker": "featured",
            "depth": 1,
            "phase": "featured",
        }
        assert by_marker[("product", url)] == {
            "url": url,
            "marker": "product",
            "depth": 1,
            "phase": "product",
            "dropped": "duplicate_marker",
            "claimed_by": "featured",
        }
    for n in range(4, 7):
        assert by_marker[("product", shop.url(f"/item/{n}"))]["phase"] == "product"

    records, summary, err = run(workflow, tmp_path / "out", "first", capsys)

    kept, funnel = expected_from_preview(links)
    assert crawled(records) == kept
    assert links_funnel(summary) == funnel
    assert links_funnel(summary)["product|product"] == {
        "discovered": 6,
        "in_scope": 6,
        "duplicate_marker": 3,
        "new": 3,
        "fetched": 3,
        "extracted": 3,
    }
    assert {r["data"]["title"] for r in records if r["phase"] == "featured"} == {
        "Item 1",
        "Item 2",
        "Item 3",
    }
    # The run's summary on stderr says where the product links went.
    assert "links claimed first by another marker on the same page: product -> product 3" in err, (
        err
    )


def test_every_claim_is_a_task_of_its_own_preview_equals_run(
    shop: PagesSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workflow = write_workflow(tmp_path, shop)

    links = preview_links(workflow, shop, "every", capsys)

    assert [link for link in links if "dropped" in link] == []
    assert len(links) == 9

    records, summary, err = run(workflow, tmp_path / "out", "every", capsys)

    kept, funnel = expected_from_preview(links)
    assert crawled(records) == kept
    assert links_funnel(summary) == funnel
    # Items 1-3 have a record in each phase, each with the marker that led there.
    item_2 = sorted((r["phase"], r["marker"]) for r in records if r["url"].endswith("/item/2"))
    assert item_2 == [("featured", "featured"), ("product", "product")]
    # Two tasks for one URL: both counted, the one that failed first retried to success.
    assert summary["pages"] == {
        "published": 10,
        "finished": 10,
        "succeeded": 10,
        "failed": 0,
        "filtered": 0,
    }
    assert summary["duplicate_records_dropped"] == 0
    assert "links claimed first by another marker" not in err


# -- the frontier over the memory adapters: claim keys across pages


def frontier_for(
    claims: str,
) -> tuple[Frontier, ExecutionContext, MemoryStateStore, MemoryTaskQueue]:
    clock = FakeClock()
    state = MemoryStateStore(clock)
    queue = MemoryTaskQueue(clock, ack_deadline_s=3600)
    execution = Execution(
        id="e1", workflow="test-crawl", workflow_version=1, created_at=clock.wall()
    )
    phases = [
        {
            "name": "page",
            "nodes": [
                {"type": "extract_links", "marker": "a"},
                {"type": "extract_links", "marker": "b"},
            ],
        }
    ]
    workflow = make_workflow(["http://127.0.0.1:9/"], phases=phases, link_claims=claims)
    ctx = ExecutionContext.build(execution, workflow)
    return Frontier(MemorySeenSet(), state, queue, clock), ctx, state, queue


def parent(url: str) -> Task:
    return Task(execution_id="e1", url=url, depth=0, phase="page")


async def drain(queue: MemoryTaskQueue) -> list[Task]:
    tasks = []
    while queue.pending():
        delivery = await queue.receive()
        tasks.append(delivery.task)
        await delivery.ack()
    return tasks


async def test_every_keys_a_url_by_marker_across_pages_and_completes() -> None:
    frontier, ctx, state, queue = frontier_for("every")
    url = "http://127.0.0.1:9/x"

    first = await frontier.admit(ctx, parent("http://127.0.0.1:9/p1"), [Link(url, "a", 1)])
    again = await frontier.admit(
        ctx, parent("http://127.0.0.1:9/p2"), [Link(url, "a", 1), Link(url, "b", 1)]
    )

    assert first["new|page|a"] == 1
    # The same URL and marker from another page is not new; another marker is.
    assert again["new|page|a"] == 0 and again["new|page|b"] == 1
    tasks = await drain(queue)
    assert [(t.url, t.marker, t.ledger_key) for t in tasks] == [
        (url, "a", f"{url}#a"),
        (url, "b", f"{url}#b"),
    ]
    # Both tasks are the ledger's to finish: the execution completes once both have.
    results = [task_result_of(t) for t in tasks]
    assert await state.finish_tasks("e1", results[:1]) == 1
    assert not (await state.progress("e1")).complete
    assert await state.finish_tasks("e1", results[1:]) == 1
    assert (await state.progress("e1")).complete


async def test_first_drops_an_earlier_pages_url_whatever_its_marker() -> None:
    frontier, ctx, _state, queue = frontier_for("first")
    url = "http://127.0.0.1:9/x"

    await frontier.admit(ctx, parent("http://127.0.0.1:9/p1"), [Link(url, "a", 1)])
    later = await frontier.admit(ctx, parent("http://127.0.0.1:9/p2"), [Link(url, "b", 1)])

    # Across pages the seen set knows the URL, not who claimed it: in scope, not new.
    assert later == Counter({"discovered|page|b": 1, "in_scope|page|b": 1})
    assert [(t.url, t.marker, t.key) for t in await drain(queue)] == [(url, "a", None)]


def task_result_of(task: Task) -> TaskResult:
    return TaskResult(
        key=task.ledger_key, url=task.url, phase=task.phase, depth=task.depth, outcome="succeeded"
    )
