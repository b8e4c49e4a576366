"""Secret references in workflow values: ``${secret:NAME}``.

A workflow never holds a credential itself: header and cookie values, login form fields and
proxy URLs name secrets, which are resolved per execution from the tenant's secrets (or, for
``trawl run``, from the environment) just before use. Resolved values never reach records,
logs or error messages (``workflows.redact``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# A secret's name: what ${secret:NAME} may name and /v1/secrets/{name} may store.
SECRET_NAME = "[A-Za-z_][A-Za-z0-9_]{0,127}"
SECRET_REF = re.compile(r"\$\{secret:(" + SECRET_NAME + r")\}")


class MissingSecretError(KeyError):
    """A value names a secret the execution does not have."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"secret {self.name!r} is not set"


def secret_names(text: str) -> list[str]:
    """The secrets ``text`` names, in order, each once."""
    return list(dict.fromkeys(SECRET_REF.findall(text)))


def names_in(values: Iterable[str]) -> list[str]:
    """The secrets any of ``values`` names, in order, each once."""
    out: dict[str, None] = {}
    for value in values:
        for name in SECRET_REF.findall(value):
            out[name] = None
    return list(out)


def resolve(text: str, secrets: Mapping[str, str]) -> str:
    """``text`` with every ``${secret:NAME}`` replaced by its value; MissingSecretError
    names the first one ``secrets`` lacks."""
    if "${secret:" not in text:
        return text

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in secrets:
            raise MissingSecretError(name)
        return secrets[name]

    return SECRET_REF.sub(value, text)
