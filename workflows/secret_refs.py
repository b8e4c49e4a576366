"""Where a workflow names secrets, and whether an execution has them all.

Every ``${secret:NAME}`` in any value of the workflow, and every name in
``login.secrets``, is found with its path (``fetch.headers.Authorization``), so an
execution can be refused before it starts, naming the key and the secret it lacks
(``fetch.headers.Authorization: secret 'API_TOKEN' is not set``), and a worker loads only
the secrets its execution uses. Where a reference is resolved (headers, cookies, the login
form, proxies) is ``RESOLVED_UNDER``; validation refuses one anywhere else, where it would
be used as written.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

import msgspec

from workflows import paths
from workflows.errors import Problem
from workflows.secrets import SECRET_REF, MissingSecretError
from workflows.spec import Workflow

# The keys whose values (at any depth below) have their ${secret:NAME} resolved.
RESOLVED_UNDER = ("fetch.headers", "fetch.cookies", "login.form", "proxies")
SCRIPT_SECRETS = "login.secrets"


def secret_refs(workflow: Workflow) -> list[tuple[str, str]]:
    """(path, secret name) of every secret the workflow names, in document order."""
    found = list(_refs(msgspec.to_builtins(workflow), ""))
    if workflow.login is not None:
        found += [
            (paths.index(SCRIPT_SECRETS, i), name) for i, name in enumerate(workflow.login.secrets)
        ]
    return found


def secret_names(workflow: Workflow) -> list[str]:
    """The secrets the workflow names, each once, in order."""
    return list(dict.fromkeys(name for _, name in secret_refs(workflow)))


def missing(workflow: Workflow, available: Collection[str]) -> list[Problem]:
    """One problem per place that names a secret not in ``available``."""
    return [
        Problem(path, str(MissingSecretError(name)))
        for path, name in secret_refs(workflow)
        if name not in available
    ]


def unresolved_refs(workflow: Workflow) -> list[Problem]:
    """References where nothing resolves them (a start URL, a selector...)."""
    where = ", ".join(RESOLVED_UNDER)
    return [
        Problem(
            path,
            f"${{secret:{name}}} is only resolved under {where}; here it would be used as written",
        )
        for path, name in _refs(msgspec.to_builtins(workflow), "")
        if not _resolved(path)
    ]


def _resolved(path: str) -> bool:
    return any(path == p or path.startswith((f"{p}.", f"{p}[")) for p in RESOLVED_UNDER)


def _refs(data: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(data, str):
        for name in dict.fromkeys(SECRET_REF.findall(data)):
            yield path, name
    elif isinstance(data, list):
        for i, item in enumerate(data):
            yield from _refs(item, paths.index(path, i))
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _refs(value, paths.key(path, str(key)))
