"""Problems found in a workflow, and the one exception that carries all of them.

Validation collects every problem before failing, so an author fixes a file in one round
instead of one error per run; each problem names its path inside the document.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import msgspec


class Problem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One thing wrong with a workflow, at ``path`` (``phases[1].nodes[0].selector``).

    The path never includes the file name: the same problem reads the same whether the
    workflow came from a file, an HTTP body or ``--set``.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class WorkflowInvalid(Exception):
    """A workflow was rejected; invalid input, never retryable.

    ``source`` (a file name, when there is one) is for display only.
    """

    def __init__(self, problems: Iterable[Problem], source: str | None = None) -> None:
        self.problems: list[Problem] = list(problems)
        self.source = source
        super().__init__(self.problems, source)  # the args rebuild it, e.g. when pickled

    def summary(self) -> str:
        """``<source>: N problems`` - the first line of a report."""
        count = len(self.problems)
        head = f"{count} problem" + ("" if count == 1 else "s")
        return f"{self.source}: {head}" if self.source else head

    def __str__(self) -> str:
        return "\n".join([self.summary(), *(str(p) for p in self.problems)])


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest choice to a misspelt word, else ``""``."""
    close = closest(word, choices)
    return f"; did you mean {close!r}?" if close is not None else ""


def closest(word: object, choices: Iterable[str]) -> str | None:
    """The choice a misspelt ``word`` most likely meant, if one is close enough."""
    if not isinstance(word, str):
        return None
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None
