"""Turning extracted text into field values.

Pages write numbers and flags for people, not parsers, so conversion is lenient about the
usual spellings and strict about everything else. Each converter returns None when the text
cannot be read as its type; the extract node turns that into null (or the field's default)
and a warning, never an exception.

Rules:

- string: the text as a reader sees it (nodes/text.py): whitespace runs collapsed to one
  space, ends stripped, the lines of ``<pre>`` and ``<br>`` kept. ``collapse`` is the
  collapsing; attributes and XPath strings get it alone.
- int: optional sign, digits, thousands grouped by ``,``, ``.``, ``'`` or spaces
  (``"1,234"``, ``" 42 "``, ``"1 234 567"``); a zero fraction is accepted (``"42.00"``).
  ``"12.5"`` is a failure, not 12: silently dropping a fraction would corrupt data.
- float: ``"12.50"``, ``"1,234.5"``, ``"1.234,5"`` (when both ``.`` and ``,`` occur, the last
  one is the decimal separator), ``"12,5"`` (a single comma and no dot is a decimal comma,
  except before exactly three digits, ``"1,234"``, which is read as thousands, as int does),
  repeated ``,`` or ``.`` alone are thousands (``"1.234.567"``), exponents (``"1e3"``).
  ``nan`` and ``inf`` are failures: they are not JSON.
- bool: ``true yes y on 1`` are True, ``false no n off 0`` and empty text are False (any
  case); any other text is True, since the element holding it is present.
"""

from __future__ import annotations

import re

# Characters pages put between digit groups besides "," and ".".
_GROUP_CHARS = str.maketrans("", "", " \u00a0\u202f\u2009'\u2019_")
_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")

_FALSE = frozenset({"false", "no", "n", "off", "0", ""})


def collapse(text: str) -> str:
    """Whitespace as a reader sees it: runs of it are one space, none at the ends."""
    return " ".join(text.split())


def _plain_number(text: str, *, integer: bool) -> str | None:
    """``text`` with grouping removed and ``.`` as the decimal point, or None."""
    s = text.strip().translate(_GROUP_CHARS)
    if _INTEGER.fullmatch(s):
        return s  # the common case, decided without looking at separators
    dots, commas = s.count("."), s.count(",")
    if dots and commas:
        decimal = "." if s.rfind(".") > s.rfind(",") else ","
        thousands = "," if decimal == "." else "."
        if s.count(decimal) > 1:
            return None
        s = s.replace(thousands, "").replace(decimal, ".")
    elif commas > 1 or dots > 1:
        s = s.replace(",", "").replace(".", "")
    elif commas or dots:
        sep = "," if commas else "."
        head, _, tail = s.partition(sep)
        # "1,234" and (for int) "1.234" are grouped thousands; "0,125" and "12,5" are not.
        grouped = len(tail) == 3 and tail.isdigit() and head.lstrip("+-") not in ("", "0")
        s = head + tail if grouped and (integer or sep == ",") else head + "." + tail
    return s if _DECIMAL.fullmatch(s) else None


def to_int(text: str) -> int | None:
    """An int from how pages write whole numbers, or None."""
    s = _plain_number(text, integer=True)
    if s is None or "e" in s or "E" in s:
        return None
    whole, _, fraction = s.partition(".")
    if fraction.strip("0") or whole in ("", "+", "-"):
        return None
    return int(whole)


def to_float(text: str) -> float | None:
    """A float from how pages write decimal numbers, or None."""
    s = _plain_number(text, integer=False)
    if s is None:
        return None
    value = float(s)
    # "1e999" overflows to inf, which is no JSON number.
    return value if value - value == 0 else None


def to_bool(text: str) -> bool:
    """A flag: the usual words for yes and no; any other text means present, so True."""
    # "true", "yes", "y", "on", "1" need no list: like any other non-empty text, they are True.
    return text.strip().lower() not in _FALSE
