"""How problem paths are spelled: ``phases[1].nodes[0].fields.price.regex``.

One place, so structural checks, semantic checks and ``--set`` agree on the spelling.
"""

from __future__ import annotations

import json
import re

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key(path: str, name: object) -> str:
    """The path of mapping key ``name`` under ``path``; odd keys are quoted in brackets."""
    if isinstance(name, str) and _PLAIN_KEY.fullmatch(name):
        return f"{path}.{name}" if path else name
    text = name if isinstance(name, str) else str(name)
    return f"{path}[{json.dumps(text)}]"


def index(path: str, position: int) -> str:
    """The path of list item ``position`` under ``path``."""
    return f"{path}[{position}]"
