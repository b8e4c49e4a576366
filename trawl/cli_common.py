"""What every command shares: exit codes, the one-line error, ``--set``, loading a workflow."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from workflows import Workflow, load_workflow_file

EXIT_OK = 0
EXIT_INVALID = 1  # the input was read but is not valid
EXIT_USAGE = 2  # bad arguments, or the input could not be read at all


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
        help="override a workflow setting, e.g. --set max_depth=2 --set phases[0].engine=http",
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
