"""What every command shares: exit codes, the one-line error, ``--set``, loading a workflow."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import Literal, TextIO

from workflows import Workflow, load_workflow_file
from workflows.rules import CrawlRules
from workflows.scope import site_of
from workflows.urls import BadUrl

EXIT_OK = 0
EXIT_INVALID = 1  # the input was read but is not valid
EXIT_USAGE = 2  # bad arguments, or the input could not be read at all
# 3: did not complete, or a backend could not be reached (trawl.run_commands, dist_commands)
EXIT_NOTHING_CRAWLED = 4  # trawl run completed without fetching a single page
EXIT_ALL_FAILED = 5  # trawl run completed and every page it fetched failed


class CommandError(Exception):
    """A failure to report as one line (``trawl: <message>``) and an exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """``--set key=value`` (repeatable), shared by every command that loads a workflow."""
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a workflow setting, e.g. --set max_depth=2 --set phases[page].engine=http "
        "(a phase by name or index)",
    )


def load_workflow_arg(path: str, sets: Sequence[str] = ()) -> Workflow:
    """The workflow in file ``path`` with overrides; raises for ``main`` to report."""
    try:
        return load_workflow_file(path, overrides=sets)
    except IsADirectoryError:
        raise CommandError(f"{path}: is a directory, not a workflow file") from None
    except FileNotFoundError:
        raise CommandError(f"{path}: no such file") from None
    except OSError as error:
        raise CommandError(f"{path}: cannot read: {error.strerror or error}") from None


def start_url_warnings(workflow: Workflow) -> list[str]:
    """``start_urls[i]: why`` for each start URL the scope keeps out: valid, but it crawls
    nothing from there."""
    rules = CrawlRules(workflow)
    found = []
    for index, url in enumerate(workflow.start_urls):
        try:
            canonical = rules.canonical(url)
        except BadUrl as error:
            found.append(f"start_urls[{index}]: {url} cannot be crawled: {error}")
            continue
        why = _out_of_scope_because(workflow, rules, canonical)
        if why is not None:
            found.append(f"start_urls[{index}]: {url} is out of scope, so it is not crawled: {why}")
    return found


def _out_of_scope_because(workflow: Workflow, rules: CrawlRules, canonical: str) -> str | None:
    scope = workflow.scope
    if scope.allowed_domains and not rules.sites.allows(canonical):
        allowed = ", ".join(scope.allowed_domains)
        return f"its host {site_of(canonical)} is not in scope.allowed_domains ({allowed})"
    if scope.include and not any(re.search(p, canonical) for p in scope.include):
        return f"it matches no scope.include pattern ({', '.join(map(repr, scope.include))})"
    for pattern in scope.exclude:
        if re.search(pattern, canonical):
            return f"it is excluded by the scope.exclude pattern {pattern!r}"
    if not rules.in_scope(canonical):  # a rule this explanation does not know
        return "the workflow's scope rules leave it out"
    return None


def print_warnings(warnings: Sequence[str], stream: TextIO | None = None) -> None:
    """Each as ``warning: <path>: <message>`` on stderr."""
    for warning in warnings:
        print(f"warning: {warning}", file=stream or sys.stderr)


def concurrency_arg(text: str) -> int | Literal["auto"]:
    """``--concurrency``: "auto", or a number of tasks in flight (at least 1)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        level = int(text)
    except ValueError:
        level = 0
    if level < 1:
        raise argparse.ArgumentTypeError(f"expected auto or a number from 1, not {text!r}")
    return level
