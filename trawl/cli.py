"""The ``trawl`` command line.

Each command is a ``cmd_<name>(args) -> int`` plus an ``_add_<name>`` that declares its
arguments; ``build_parser`` lists them. Commands report failure by raising ``CommandError``
(or letting ``WorkflowInvalid`` through): ``main`` turns both into a message on stderr and
an exit code, so no command prints a traceback for a user's mistake. Commands import
heavy modules (browsers, cloud clients) inside their function, keeping ``trawl validate``
fast and free of services.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from trawl.cli_common import (
    EXIT_INVALID,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_set_argument,
    load_workflow_arg,
    print_warnings,
    start_url_warnings,
)
from trawl.dist_commands import add_distributed
from trawl.prune_commands import add_prune
from trawl.run_commands import add_preview, add_run
from trawl.schedule_commands import add_schedules
from trawl.secrets_commands import add_secrets
from workflows import WorkflowInvalid, workflow_json_schema
from workflows.version import __version__

__all__ = ["CommandError", "add_set_argument", "load_workflow_arg", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (the console script passes it to sys.exit)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help and on usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if args.handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    # Library warnings (a retry, a slow backend) are for logs, not for a command's user;
    # `trawl worker` sets up its own structured logging.
    logging.basicConfig(level=logging.ERROR, format="trawl: %(message)s")
    try:
        code: int = args.handler(args)
    except WorkflowInvalid as error:
        print_problems(error)
        return EXIT_INVALID
    except CommandError as error:
        print(f"trawl: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        print("trawl: interrupted", file=sys.stderr)
        return 130
    return code


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command registered."""
    parser = argparse.ArgumentParser(
        prog="trawl", description="An async, event-driven crawl orchestrator."
    )
    parser.add_argument("--version", action="version", version=f"trawl {__version__}")
    parser.set_defaults(handler=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_validate(commands)
    _add_schema(commands)
    add_run(commands)
    add_preview(commands)
    add_distributed(commands)
    add_secrets(commands)
    add_schedules(commands)
    add_prune(commands)
    return parser


def print_problems(error: WorkflowInvalid) -> None:
    """``<file>: N problems`` then one ``path: message`` line per problem, on stderr."""
    print(error.summary(), file=sys.stderr)
    for problem in error.problems:
        print(problem, file=sys.stderr)


def _add_validate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "validate",
        help="check a workflow file and list every problem",
        description="Check a workflow file (YAML or JSON) without fetching anything. "
        "Exit 0 when valid, 1 when it has problems, 2 when it cannot be read. A start URL "
        "the scope keeps out is a warning (warning: start_urls[i]: ...), not a problem.",
    )
    parser.add_argument("workflow", metavar="WORKFLOW", help="a .yaml, .yml or .json file")
    add_set_argument(parser)
    parser.set_defaults(handler=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate before running: every problem at once, each with its path."""
    workflow = load_workflow_arg(args.workflow, args.sets)
    print_warnings(start_url_warnings(workflow))
    count = len(workflow.phases)
    print(f"OK: {args.workflow} ({workflow.name}, {count} phase{'' if count == 1 else 's'})")
    return EXIT_OK


def _add_schema(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "schema",
        help="print the JSON Schema of workflow files",
        description="Print the JSON Schema of workflow files, for editors "
        "(e.g. a yaml-language-server $schema comment).",
    )
    parser.set_defaults(handler=cmd_schema)


def cmd_schema(args: argparse.Namespace) -> int:
    """Editors validate and complete workflow files with it."""
    print(json.dumps(workflow_json_schema(), indent=2))
    return EXIT_OK
