"""The extract node: the fields of a page's record, read with CSS or XPath.

docs/workflows.md ("extract") describes fields for authors; these are the details.

- Where: a bare string is a CSS selector. A ``Field`` has ``css`` or ``xpath``; with
  neither it reads the element it is evaluated on (useful in nested ``fields``). Nested
  selectors search inside their parent element only (the parent itself is not a match), and
  a nested XPath starting with ``/`` is made relative (``//td`` means ``.//td``).
- What: text content, or ``attr``'s value, or (``type: html``) the inner HTML. XPath may also
  yield strings (``text()``, ``@href``, ``count(...)``): those are the value as they are.
- Then, in this order: whitespace is collapsed (all types but html); ``regex`` is searched
  for and its group ``value``, if the pattern has one, else the whole match, is kept; with
  ``absolute_url`` the value is joined to the page's base URL (``<base href>`` honoured,
  other schemes such as ``data:`` kept as they are); the value is converted to ``type``
  (see ``nodes.convert``). An attribute that is present but empty is True for ``type: bool``
  (``checked``, ``disabled``).
- Null: a selector that matches nothing, a missing attribute, a regex that does not match,
  a value that does not convert or is no URL give the field's ``default`` (else null). The
  last three also count a warning (``field_regex_no_match``, ``field_conversion``,
  ``field_bad_url``), never an exception; they are data problems, not workflow bugs.
- ``multiple``: a list of the values of every match, null ones left out (like a missing
  ``src`` on one image); an empty list is null (or the default).
- ``fields``: an object of the sub-fields evaluated on the match (a list of them with
  ``multiple``). ``as: object`` folds ``[{key, value}, …]`` into ``{key: value}``; null and
  empty keys are skipped, a later duplicate wins.
- A selector that cannot be parsed (validation should have caught it) raises ValueError
  naming the selector: that is a workflow bug, and the task fails for good.

Each spec is compiled once (regexes compiled, types resolved to functions, nested XPath
made relative) into a plan kept while the spec object lives (``nodes.compiled.per_spec``), so
the per-page work is only selection and conversion.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nodes.compiled import per_spec
from nodes.context import NodeContext
from nodes.convert import collapse, to_bool, to_float, to_int
from nodes.page import Element, Page
from workflows import regex as user_regex
from workflows.spec import ExtractNode, FieldSpec

_CONVERT: dict[str, Callable[[str], Any]] = {"int": to_int, "float": to_float}

# What a field selects in: the page, or (nested fields) the element its parent matched.
_Scope = Page | Element


class _Plan:
    """One field, compiled."""

    __slots__ = (
        "absolute_url",
        "as_object",
        "attr",
        "convert",
        "css",
        "default",
        "fields",
        "html",
        "is_bool",
        "label",
        "multiple",
        "name",
        "regex",
        "regex_group",
        "xpath",
    )

    def __init__(self, name: str, spec: FieldSpec, *, nested: bool, parent: str = "") -> None:
        self.name = name
        self.label = f"{parent}.{name}" if parent else name  # how warnings name the field
        if isinstance(spec, str):
            spec_css: str | None = spec
            spec_xpath: str | None = None
            field_type, regex, default = "string", None, None
            attr, multiple, absolute_url, sub, as_ = None, False, False, None, None
        else:
            spec_css, spec_xpath = spec.css, spec.xpath
            field_type, regex, default = spec.type, spec.regex, spec.default
            attr, multiple, absolute_url = spec.attr, spec.multiple, spec.absolute_url
            sub, as_ = spec.fields, spec.as_
        if nested and spec_xpath is not None and spec_xpath.startswith("/"):
            spec_xpath = "." + spec_xpath
        self.css = spec_css
        self.xpath = spec_xpath
        self.attr = attr
        self.html = field_type == "html"
        self.is_bool = field_type == "bool"
        self.convert = _CONVERT.get(field_type)
        self.default = default
        self.multiple = multiple
        self.absolute_url = absolute_url
        self.as_object = as_ == "object"
        self.fields = (
            None
            if sub is None
            else tuple(_Plan(k, v, nested=True, parent=self.label) for k, v in sub.items())
        )
        self.regex: user_regex.Pattern | None = None
        self.regex_group: str | int = 0
        if regex is not None:
            try:
                self.regex = user_regex.compile_pattern(regex)
            except user_regex.RegexError as exc:
                raise ValueError(f"field {name!r}: bad regex {regex!r}: {exc}") from exc
            if "value" in self.regex.groupindex:
                self.regex_group = "value"

    def fallback(self) -> Any:
        """The default, copied when mutable so no two records share one list or dict."""
        default = self.default
        if isinstance(default, (list, dict)):
            return copy.deepcopy(default)
        return default


def _compile(spec: ExtractNode) -> tuple[_Plan, ...]:
    return tuple(_Plan(name, field, nested=False) for name, field in spec.fields.items())


# The plan of each live ExtractNode, compiled on its first page.
_plans = per_spec(_compile)


def _selector_error(kind: str, selector: str, exc: Exception) -> ValueError:
    return ValueError(f"{kind} {selector!r} cannot be evaluated: {exc}")


def _select_all(plan: _Plan, scope: _Scope, page: Page) -> Sequence[Element | str]:
    if plan.css is not None:
        try:
            return scope.css(plan.css)
        except Exception as exc:
            raise _selector_error("CSS selector", plan.css, exc) from exc
    if plan.xpath is not None:
        try:
            return scope.xpath(plan.xpath)
        except Exception as exc:
            raise _selector_error("XPath", plan.xpath, exc) from exc
    return [page.root if isinstance(scope, Page) else scope]


def _select_first(plan: _Plan, scope: _Scope, page: Page) -> Element | str | None:
    if plan.css is not None:
        try:
            return scope.css_first(plan.css)
        except Exception as exc:
            raise _selector_error("CSS selector", plan.css, exc) from exc
    found = _select_all(plan, scope, page)
    return found[0] if found else None


def _field(plan: _Plan, scope: _Scope, page: Page, ctx: NodeContext) -> Any:
    """The value of one field evaluated in ``scope``."""
    if plan.multiple:
        values = [
            value
            for item in _select_all(plan, scope, page)
            if (value := _value(plan, item, page, ctx)) is not None
        ]
        if not values:
            return plan.fallback()
        return _fold(values) if plan.as_object else values
    item = _select_first(plan, scope, page)
    value = None if item is None else _value(plan, item, page, ctx)
    if value is None:
        return plan.fallback()
    return _fold([value]) if plan.as_object else value


def _value(plan: _Plan, item: Element | str, page: Page, ctx: NodeContext) -> Any:
    """The value one match gives, None when it gives none."""
    if plan.fields is not None:
        if isinstance(item, str):  # an XPath string has no sub-elements to look into
            ctx.warn("field_not_element", field=plan.label)
            return None
        return {sub.name: _field(sub, item, page, ctx) for sub in plan.fields}
    if isinstance(item, str):
        raw = item
    elif plan.attr is not None:
        attr = item.attr(plan.attr)
        if attr is None:
            return None
        if plan.is_bool and not attr:
            return True  # a bare boolean attribute: present means true
        raw = attr
    elif plan.html:
        raw = item.inner_html()
    else:
        raw = item.text()
    text = raw if plan.html else collapse(raw)
    if plan.regex is not None:
        match = plan.regex.search(text)
        found = None if match is None else match.group(plan.regex_group)
        if found is None:
            ctx.warn("field_regex_no_match", field=plan.label)
            return None
        text = found if plan.html else found.strip()
    if plan.absolute_url:
        if not text:
            return None
        url = page.absolute(text)
        if url is None:
            ctx.warn("field_bad_url", field=plan.label)
            return None
        text = url
    if plan.convert is not None:
        value = plan.convert(text)
        if value is None:
            ctx.warn("field_conversion", field=plan.label)
        return value
    if plan.is_bool:
        return to_bool(text)
    return text


def _fold(rows: list[Any]) -> dict[str, Any]:
    """``[{key, value}, …]`` as ``{key: value}``: the shape of spec tables."""
    out: dict[str, Any] = {}
    for row in rows:
        if not isinstance(row, Mapping):
            continue
        key = row.get("key")
        if key is None or key == "" or isinstance(key, (list, dict)):
            continue
        if isinstance(key, bool):
            key = "true" if key else "false"
        out[key if isinstance(key, str) else str(key)] = row.get("value")
    return out


async def run(spec: ExtractNode, page: Page, ctx: NodeContext) -> None:
    """Add the spec's fields to the page's record."""
    data = ctx.data
    for plan in _plans(spec):
        data[plan.name] = _field(plan, page, page, ctx)
