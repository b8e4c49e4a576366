"""The ``trawl`` command line.

Each command is a ``cmd_<name>(args) -> int`` plus an ``_add_<name>`` that declares its
arguments; ``build_parser`` lists them. Commands report failure by raising ``CommandError``
(or letting ``WorkflowInvalid`` through): ``main`` turns both into a message on stderr and
an exit code, so no command prints a traceback for a user's mistake. Commands import
heavy modules (browsers, cloud clients) inside their function, keeping ``trawl validate``
fast and free of services; and when the command line names a command, only the module that
registers it is imported (``trawl run`` never loads the distributed commands' modules).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeAlias

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
from workflows import WorkflowInvalid
from workflows.version import __version__

__all__ = ["CommandError", "add_set_argument", "load_workflow_arg", "main"]

if TYPE_CHECKING:
    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

# Who registers which commands, in the order ``trawl --help`` lists them: (module, function,
# the commands it adds). A command line that names one of them imports only its module
# (tests/unit/test_cli_startup.py checks that these names are what each function adds).
REGISTRARS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("trawl.cli", "_add_validate", ("validate",)),
    ("trawl.cli", "_add_schema", ("schema",)),
    ("trawl.run_commands", "add_run", ("run",)),
    ("trawl.run_commands", "add_preview", ("preview",)),
    (
        "trawl.dist_commands",
        "add_distributed",
        (
            "migrate",
            "worker",
            "setup",
            "orchestrator",
            "keys",
            "webhooks",
            "failures",
            "submit",
            "status",
            "cancel",
            "reconcile",
            "export",
        ),
    ),
    ("trawl.secrets_commands", "add_secrets", ("secrets",)),
    ("trawl.schedule_commands", "add_schedules", ("schedules",)),
    ("trawl.prune_commands", "add_prune", ("prune",)),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (the console script passes it to sys.exit)."""
    code = _main(sys.argv[1:] if argv is None else list(argv))
    if argv is None:
        # The process's own command (the console script, ``python -m trawl``), about to
        # exit: what it made is garbage, and the interpreter's last collections would walk
        # all of it (a crawl's seen set, its tasks...) for nothing, 0.1-0.3 s of a `trawl
        # run`. Frozen objects are left out of them; finalizers and atexit still run. A
        # caller's in-process call (argv given) keeps its collector as it was.
        gc.freeze()
    return code


def _main(argv: list[str]) -> int:
    parser = build_parser(_command_named(argv))
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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with every command registered; with ``command`` (one of them),
    only the commands of the module that registers it, which alone is imported."""
    parser = argparse.ArgumentParser(
        prog="trawl", description="An async, event-driven crawl orchestrator."
    )
    parser.add_argument("--version", action="version", version=f"trawl {__version__}")
    parser.set_defaults(handler=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module, function, names in REGISTRARS:
        if command is None or command in names:
            _registrar(module, function)(commands)
    return parser


def _command_named(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names when it starts with one (else None: every command is
    registered, for ``--help``, ``--version`` and usage errors)."""
    if not argv:
        return None
    known = {name for _, _, names in REGISTRARS for name in names}
    return argv[0] if argv[0] in known else None


def _registrar(module: str, function: str) -> Callable[[Commands], None]:
    add: Callable[[Commands], None] = getattr(importlib.import_module(module), function)
    return add


def print_problems(error: WorkflowInvalid) -> None:
    """``<file>: N problems`` then one ``path: message`` line per problem, on stderr."""
    print(error.summary(), file=sys.stderr)
    for problem in error.problems:
        print(problem, file=sys.stderr)


def _add_validate(commands: Commands) -> None:
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


def _add_schema(commands: Commands) -> None:
    parser = commands.add_parser(
        "schema",
        help="print the JSON Schema of workflow files",
        description="Print the JSON Schema of workflow files, for editors "
        "(e.g. a yaml-language-server $schema comment).",
    )
    parser.set_defaults(handler=cmd_schema)


def cmd_schema(args: argparse.Namespace) -> int:
    """Editors validate and complete workflow files with it."""
    from workflows import workflow_json_schema

    print(json.dumps(workflow_json_schema(), indent=2))
    return EXIT_OK
