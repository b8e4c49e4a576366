"""An execution's secrets: loaded from the tenant's (the SecretStore), checked before the
execution starts, resolved into what every request sends, and masked in what it reports.

``load_secrets`` is the one place they are read: ``start_execution`` calls it before
anything is created, so a workflow that names a secret the tenant does not have is refused
with the key and the secret (``fetch.headers.Authorization: secret 'API_TOKEN' is not
set``), and every worker calls it when it builds the execution's context. Only the secrets
the workflow names are read. The values live in memory only; records, failure messages and
logs get ``MASK`` in their place (``redact``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

from backends.errors import InvalidInputError
from backends.state import SecretStore
from workflows import paths
from workflows.errors import Problem
from workflows.redact import MASK
from workflows.secret_refs import missing, secret_names
from workflows.secrets import resolve
from workflows.session_checks import cookie_value_error, header_value_error
from workflows.spec import FetchSettings, Workflow


class SecretsMissing(InvalidInputError):
    """The workflow names secrets the tenant does not have (or whose values cannot go where
    they are used); one problem per place, with its path. An API start answers 400 with
    them, ``trawl run`` exits 2."""

    error_class = "missing_secret"

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


async def load_secrets(store: SecretStore, tenant: str, workflow: Workflow) -> dict[str, str]:
    """The values of the secrets ``workflow`` names, from ``tenant``'s; SecretsMissing
    naming every place whose secret is missing or whose value does not fit there."""
    names = secret_names(workflow)
    if not names:
        return {}
    values = await store.get_secrets(tenant, names)
    problems = missing(workflow, values) or unusable(workflow.fetch, values)
    if problems:
        raise SecretsMissing(problems)
    return values


def unusable(fetch: FetchSettings, secrets: Mapping[str, str]) -> list[Problem]:
    """Headers and cookies whose resolved values cannot be sent (a line break in a header,
    a semicolon in a cookie): the message names the place, never the value."""
    problems = []
    for kind, values, error_of in (
        ("fetch.headers", fetch.headers, header_value_error),
        ("fetch.cookies", fetch.cookies, cookie_value_error),
    ):
        for name, value in values.items():
            if "${secret:" not in value:
                continue  # checked when the workflow was validated
            error = error_of(resolve(value, secrets))
            if error is not None:
                problems.append(Problem(paths.key(kind, name), f"with its secrets, {error}"))
    return problems


@dataclass(frozen=True, slots=True)
class Resolved:
    """What every request of an execution sends as itself, secrets resolved."""

    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)  # to URLs in scope only

    @classmethod
    def of(cls, fetch: FetchSettings, secrets: Mapping[str, str]) -> Resolved:
        """MissingSecretError (a KeyError) if a value names a secret not in ``secrets``."""
        return cls(
            headers={k: resolve(v, secrets) for k, v in fetch.headers.items()},
            cookies={k: resolve(v, secrets) for k, v in fetch.cookies.items()},
        )


def redact(text: str, values: Iterable[str]) -> str:
    """``text`` with every one of ``values`` (and its URL-encoded forms) masked, longest
    first, so a value containing another is masked whole."""
    forms = {form for value in values if value for form in _forms(value)}
    for form in sorted(forms, key=len, reverse=True):
        if form in text:
            text = text.replace(form, MASK)
    return text


def _forms(value: str) -> set[str]:
    """A value as it may appear in a message: itself, in a query string, in a path."""
    return {value, quote_plus(value), quote(value, safe="")}
