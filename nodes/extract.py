"""The extract node: the fields of a page's record, read with CSS or XPath.

docs/workflows.md ("extract") describes fields for authors; these are the details.

- Where: a bare string is a CSS selector. A ``Field`` has ``css`` or ``xpath``; with
  neither it reads the element it is evaluated on (useful in nested ``fields``). Nested
  selectors search inside their parent element only (the parent itself is not a match), and
  a nested XPath starting with ``/`` is made relative (``//td`` means ``.//td``).
- What: the text as a reader sees it (whitespace collapsed, the lines of ``<pre>`` and
  ``<br>`` kept: nodes/text.py), or ``attr``'s value (collapsed), or (``type: html``) the
  inner HTML. XPath may also yield strings (``text()``, ``@href``, ``count(...)``): those
  are the value, collapsed. An attribute that is present but empty reads as ``true`` for
  ``type: bool`` (``checked``, ``disabled``).
- Then, in this order:
  1. per match: ``regex`` is searched for and its group ``value``, if the pattern has one,
     else the whole match, is kept (stripped, but for html);
  2. the value (the match's text, or with ``multiple`` the list of every match's text)
     goes through ``process``, in order (workflows/processors.py): a list may become a text
     (``join``) and a text a list (``split``);
  3. per text: with ``absolute_url`` it is joined to the page's base URL (``<base href>``
     honoured, other schemes such as ``data:`` kept as they are), then it is converted to
     ``type`` (see ``nodes.convert``).
- Missing: a selector that matches nothing, a missing attribute, a regex that does not
  match, a processor that gives null, a value that does not convert or is no URL give the
  field's ``default``, else null, or ``[]`` for a field whose value is a list (``{}`` for
  ``as: object``). The regex, URL and conversion cases also count a warning
  (``field_regex_no_match``, ``field_bad_url``, ``field_conversion``), and so does a
  processor whose result would grow past its bound (``field_process_limit``), never an
  exception: they are data problems, not workflow bugs.
- ``multiple``: a list of the values of every match; matches that give no value (a missing
  ``src`` on one image, a failed conversion) are left out.
- ``fields``: an object of the sub-fields evaluated on the match (a list of them with
  ``multiple``). ``as: object`` folds ``[{key, value}, …]`` into ``{key: value}``; null and
  empty keys are skipped, a later duplicate wins.
- ``required`` (top-level fields): a value that is null, ``[]`` or ``{}`` counts a
  ``missing_required`` warning naming the field; what happens to the record is the
  runtime's decision (``records.missing_required``, worker/stages.py).
- A selector that cannot be parsed (validation should have caught it) raises ValueError
  naming the selector: that is a workflow bug, and the task fails for good.

Each spec is compiled once (regexes and processors compiled, types resolved to functions,
nested XPath made relative) into a plan kept while the spec object lives
(``nodes.compiled.per_spec``), so the per-page work is only selection and conversion.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nodes.compiled import per_spec
from nodes.context import NodeContext
from nodes.convert import collapse, to_bool, to_float, to_int
from nodes.page import Element, Page
from workflows import processors
from workflows import regex as user_regex
from workflows.spec import ExtractNode, FieldSpec

_CONVERT: dict[str, Callable[[str], Any]] = {"int": to_int, "float": to_float}

# What a field selects in: the page, or (nested fields) the element its parent matched.
_Scope = Page | Element

# The warning a required field without a value counts (worker/stages.py reads it).
MISSING_REQUIRED = "missing_required"


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
        "process",
        "regex",
        "regex_group",
        "required",
        "xpath",
        "yields_list",
    )

    def __init__(self, name: str, spec: FieldSpec, *, nested: bool, parent: str = "") -> None:
        self.name = name
        self.label = f"{parent}.{name}" if parent else name  # how warnings name the field
        if isinstance(spec, str):
            spec_css: str | None = spec
            spec_xpath: str | None = None
            field_type, regex, default = "string", None, None
            attr, multiple, absolute_url, sub, as_ = None, False, False, None, None
            process: list[Any] = []
            required = False
        else:
            spec_css, spec_xpath = spec.css, spec.xpath
            field_type, regex, default = spec.type, spec.regex, spec.default
            attr, multiple, absolute_url = spec.attr, spec.multiple, spec.absolute_url
            sub, as_, process, required = spec.fields, spec.as_, spec.process, spec.required
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
        self.required = required and not nested
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
                raise ValueError(f"field {self.label!r}: bad regex {regex!r}: {exc}") from exc
            if "value" in self.regex.groupindex:
                self.regex_group = "value"
        self.process: processors.Pipeline | None = None
        if process:
            try:
                self.process = processors.compile_processors(process, multiple=multiple)
            except processors.ProcessorError as exc:
                raise ValueError(f"field {self.label!r}: {exc}") from exc
        self.yields_list = multiple and not self.as_object
        if process:
            self.yields_list = processors.yields_list(process, multiple=multiple)

    def fallback(self) -> Any:
        """The default, copied when mutable so no two records share one list or dict; with
        none, the empty value of the field's shape: null, [] or {}."""
        default = self.default
        if isinstance(default, (list, dict)):
            return copy.deepcopy(default)
        if default is None:
            if self.as_object and self.multiple:
                return {}
            if self.yields_list:
                return []
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
    if plan.fields is not None:
        return _objects(plan, scope, page, ctx)
    read: processors.Value | None
    if plan.multiple:
        read = [
            text
            for item in _select_all(plan, scope, page)
            if (text := _text(plan, item, ctx)) is not None
        ]
        if not read:
            return plan.fallback()
    else:
        item = _select_first(plan, scope, page)
        read = None if item is None else _text(plan, item, ctx)
        if read is None:
            return plan.fallback()
    if plan.process is not None:
        try:
            read = plan.process(read)
        except processors.ProcessLimitError:
            ctx.warn("field_process_limit", field=plan.label)
            return plan.fallback()
        if read is None:
            return plan.fallback()
    if isinstance(read, str):
        value = _typed(plan, read, page, ctx)
        return plan.fallback() if value is None else value
    values = [value for text in read if (value := _typed(plan, text, page, ctx)) is not None]
    return values if values else plan.fallback()


def _objects(plan: _Plan, scope: _Scope, page: Page, ctx: NodeContext) -> Any:
    """A field with sub-fields: an object per match (a list, or folded ``as: object``)."""
    subs = plan.fields or ()
    if plan.multiple:
        rows = [
            row
            for item in _select_all(plan, scope, page)
            if (row := _object(plan, subs, item, page, ctx)) is not None
        ]
    else:
        item = _select_first(plan, scope, page)
        row = None if item is None else _object(plan, subs, item, page, ctx)
        rows = [] if row is None else [row]
    if not rows:
        return plan.fallback()
    if plan.as_object:
        return _fold(rows)
    return rows if plan.multiple else rows[0]


def _object(
    plan: _Plan, subs: tuple[_Plan, ...], item: Element | str, page: Page, ctx: NodeContext
) -> dict[str, Any] | None:
    if isinstance(item, str):  # an XPath string has no sub-elements to look into
        ctx.warn("field_not_element", field=plan.label)
        return None
    return {sub.name: _field(sub, item, page, ctx) for sub in subs}


def _text(plan: _Plan, item: Element | str, ctx: NodeContext) -> str | None:
    """The text one match gives, its regex applied; None when it gives none."""
    if isinstance(item, str):
        text = item if plan.html else collapse(item)
    elif plan.attr is not None:
        attr = item.attr(plan.attr)
        if attr is None:
            return None
        if plan.is_bool and not attr:
            return "true"  # a bare boolean attribute: present means true
        text = attr if plan.html else collapse(attr)
    elif plan.html:
        text = item.inner_html()
    else:
        text = item.readable_text()
    if plan.regex is not None:
        match = plan.regex.search(text)
        found = None if match is None else match.group(plan.regex_group)
        if found is None:
            ctx.warn("field_regex_no_match", field=plan.label)
            return None
        text = found if plan.html else found.strip()
    return text


def _typed(plan: _Plan, text: str, page: Page, ctx: NodeContext) -> Any:
    """One processed text as the field's type (an absolute URL first, if asked); None when
    it is none."""
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


def missing(value: Any) -> bool:
    """Whether a required field's value counts as missing: null, ``[]`` or ``{}``."""
    return value is None or (isinstance(value, (list, dict)) and not value)


async def run(spec: ExtractNode, page: Page, ctx: NodeContext) -> None:
    """Add the spec's fields to the page's record; a required field without a value counts
    a ``missing_required`` warning naming it."""
    data = ctx.data
    for plan in _plans(spec):
        value = data[plan.name] = _field(plan, page, page, ctx)
        if plan.required and missing(value):
            ctx.warn(MISSING_REQUIRED, field=plan.name)
