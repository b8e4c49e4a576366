"""Secrets on the command line: ``trawl secrets set|list|delete`` for a deployment's
tenants, and where ``trawl run`` gets the secrets its workflow names.

A value is never taken from the command line (it would land in shell history and in the
process list): ``trawl secrets set NAME`` reads it from stdin or ``--value-file``, and
``trawl run`` from ``TRAWL_SECRET_<NAME>`` in the environment or, with ``--secret NAME``,
from a prompt that does not echo. Nothing here prints a value (docs/sessions.md).
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

from trawl.cli_common import EXIT_OK, EXIT_USAGE, CommandError
from workflows.secret_refs import missing, secret_names
from workflows.spec import Workflow

ENV_PREFIX = "TRAWL_SECRET_"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
NAME_RULE = "1-128 letters, digits and _, not starting with a digit"

Ask = Callable[[str], str]


# -- trawl run


def add_secret_argument(parser: argparse.ArgumentParser) -> None:
    """``--secret NAME`` (repeatable): ask for that secret's value without echoing it."""
    parser.add_argument(
        "--secret",
        dest="ask_secrets",
        action="append",
        default=[],
        metavar="NAME",
        help="ask for the value of secret NAME on the terminal (not echoed); otherwise "
        f"secrets come from {ENV_PREFIX}<NAME> in the environment",
    )


def run_secrets(
    workflow: Workflow,
    asked: Sequence[str],
    environ: Mapping[str, str] | None = None,
    ask: Ask | None = None,
) -> dict[str, str]:
    """The secrets ``workflow`` names, for ``trawl run``: each from a prompt when it is in
    ``asked``, else from ``TRAWL_SECRET_<NAME>`` (``environ``, default: os.environ).
    CommandError (exit 2) naming every place whose secret is not given."""
    environ = os.environ if environ is None else environ
    for name in asked:
        if not NAME.fullmatch(name):
            raise CommandError(f"--secret {name!r}: not a secret name ({NAME_RULE})")
    names = secret_names(workflow)
    unused = [name for name in asked if name not in names]
    if unused:
        raise CommandError(f"--secret {unused[0]}: the workflow names no such secret")
    values: dict[str, str] = {}
    for name in names:
        if name in asked:
            values[name] = (ask or _prompt)(name)
        elif ENV_PREFIX + name in environ:
            values[name] = environ[ENV_PREFIX + name]
    problems = missing(workflow, values)
    if problems:
        hint = f"set {ENV_PREFIX}<NAME> or pass --secret NAME"
        lines = "\n".join(str(p) for p in problems)
        raise CommandError(f"the workflow names secrets that are not given ({hint}):\n{lines}")
    return values


def _prompt(name: str) -> str:
    if not sys.stdin.isatty():
        raise CommandError(
            f"--secret {name}: stdin is not a terminal to ask on; set {ENV_PREFIX}{name} instead"
        )
    return getpass.getpass(f"secret {name}: ")


# -- trawl secrets


def add_secrets(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``trawl secrets set|list|delete``."""
    p = commands.add_parser(
        "secrets",
        help="manage a tenant's secrets (what ${secret:NAME} in its workflows resolves to)",
    )
    sub = p.add_subparsers(title="secrets commands", metavar="COMMAND", required=True)
    s = sub.add_parser(
        "set",
        help="create or replace a secret; the value is read from stdin or --value-file",
        description="Create or replace secret NAME of a tenant. The value is read from "
        "--value-file, else from stdin (one trailing newline removed); never from the "
        "command line. Nothing is printed but the name.",
    )
    s.add_argument("name", metavar="NAME")
    s.add_argument("--value-file", metavar="PATH", help="read the value from this file")
    s.add_argument("--tenant", default="default", help="the tenant (default: default)")
    s.set_defaults(handler=cmd_secrets_set)
    s = sub.add_parser("list", help="a tenant's secrets: names and when each was set")
    s.add_argument("--tenant", default="default", help="the tenant (default: default)")
    s.set_defaults(handler=cmd_secrets_list)
    s = sub.add_parser("delete", help="delete a tenant's secret")
    s.add_argument("name", metavar="NAME")
    s.add_argument("--tenant", default="default", help="the tenant (default: default)")
    s.set_defaults(handler=cmd_secrets_delete)


def read_value(value_file: str | None, stdin: Any = None) -> str:
    """The value from the file, or stdin, without one trailing newline."""
    if value_file is not None:
        try:
            text = Path(value_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"--value-file {value_file}: cannot read: {error}") from None
    else:
        stream = stdin or sys.stdin
        if stream.isatty():
            print("value (end with Ctrl-D):", file=sys.stderr)
        text = stream.read()
    return text.removesuffix("\n").removesuffix("\r")


def check_secret(name: str, value: str, max_bytes: int) -> None:
    """A valid name and a value that is not empty nor over ``max_bytes``: CommandError."""
    if not NAME.fullmatch(name):
        raise CommandError(f"{name!r}: not a secret name ({NAME_RULE})")
    if not value:
        raise CommandError(f"secret {name}: the value is empty")
    size = len(value.encode("utf-8"))
    if size > max_bytes:
        raise CommandError(
            f"secret {name}: the value has {size} bytes; at most {max_bytes} "
            "(TRAWL_SECRETS_MAX_VALUE_BYTES)"
        )


def cmd_secrets_set(args: argparse.Namespace) -> int:
    from trawl.dist_commands import _run, _settings
    from trawl.distributed import open_state

    tenant = _tenant(args.tenant)
    settings = _settings()
    value = read_value(args.value_file)
    check_secret(args.name, value, settings.secrets_max_value_bytes)

    async def main() -> Any:
        async with open_state(settings) as state:
            return await state.put_secret(
                tenant, args.name, value, max_secrets=settings.secrets_max_count
            )

    if _run(main) is None:
        raise CommandError(
            f"tenant {tenant!r} has {settings.secrets_max_count} secrets, the most this "
            "deployment allows (TRAWL_SECRETS_MAX_COUNT); delete one first",
            1,
        )
    print(f"secret {args.name} of tenant {tenant!r} set", file=sys.stderr)
    return EXIT_OK


def cmd_secrets_list(args: argparse.Namespace) -> int:
    from trawl.dist_commands import _run, _settings
    from trawl.distributed import open_state

    tenant = _tenant(args.tenant)
    settings = _settings()

    async def main() -> list[Any]:
        async with open_state(settings) as state:
            return await state.list_secrets(tenant)

    found = _run(main)
    width = max([len("NAME"), *(len(s.name) for s in found)])
    print(f"{'NAME'.ljust(width)}  UPDATED")
    for secret in found:
        print(f"{secret.name.ljust(width)}  {secret.updated_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z")
    print(f"{len(found)} secret(s) of tenant {tenant!r}", file=sys.stderr)
    return EXIT_OK


def cmd_secrets_delete(args: argparse.Namespace) -> int:
    from trawl.dist_commands import _run, _settings
    from trawl.distributed import open_state

    tenant = _tenant(args.tenant)
    settings = _settings()

    async def main() -> bool:
        async with open_state(settings) as state:
            return await state.delete_secret(tenant, args.name)

    if not _run(main):
        raise CommandError(f"tenant {tenant!r} has no secret {args.name}", 1)
    print(f"secret {args.name} of tenant {tenant!r} deleted", file=sys.stderr)
    return EXIT_OK


def _tenant(tenant: str) -> str:
    tenant = tenant.strip()
    if not tenant:
        raise CommandError("--tenant must not be empty", EXIT_USAGE)
    return tenant
