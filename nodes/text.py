"""The text of an element as a reader sees it: whitespace collapsed, line breaks kept.

Text fields used to be the element's text with every whitespace run collapsed to one
space, which is right for a heading or a price and wrong for a code block (one long line)
or an address written with ``<br>``. The rule now, for both parsers of ``nodes/page.py``:

- ``<pre>`` keeps its text as written: its lines, their indentation, blank lines between
  them; only blank lines at its start and end are dropped (parsers disagree on the newline
  right after ``<pre>``, and authors put one there for looks). It stands on lines of its
  own, as the block it is on screen.
- ``<br>`` ends a line; two in a row leave an empty line between.
- Everything else is collapsed as before: runs of whitespace (newlines in the source
  included) are one space, each line is trimmed, and empty lines at the ends are dropped.

Most elements a field reads hold neither ``<pre>`` nor ``<br>``; for them the result is
exactly the old collapsed text at the old cost plus a look for those two tags (under a
microsecond for a heading). Only an element that holds one walks its subtree, and even
then only the branches leading to a ``<pre>`` or ``<br>``: every other branch is read
whole by the parser, in C.
"""

from __future__ import annotations

from typing import Any

from lxml import etree
from selectolax.lexbor import LexborNode

from nodes.convert import collapse

# The tags that put line breaks into text, as a CSS selector (lexbor) and as names (lxml).
BREAKS_CSS = "br, pre"
_BREAK_TAGS = ("br", "pre")


class Lines:
    """Text arriving in document order, gathered into lines: ``flow`` text is collapsed
    into the current line, ``br`` ends it, ``pre`` puts lines of its own."""

    __slots__ = ("_done", "_line")

    def __init__(self) -> None:
        self._done: list[str] = []
        self._line: list[str] = []

    def flow(self, text: str) -> None:
        """Ordinary text: its whitespace collapses with its neighbours'."""
        if text:
            self._line.append(text)

    def br(self) -> None:
        """A ``<br>``: the current line ends here, even when empty."""
        self._done.append(collapse("".join(self._line)))
        self._line.clear()

    def pre(self, text: str) -> None:
        """A ``<pre>``'s text: on lines of its own, kept as written but for blank lines at
        its start and end."""
        self._end_block()
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        start, end = 0, len(lines)
        while start < end and not lines[start].strip():
            start += 1
        while end > start and not lines[end - 1].strip():
            end -= 1
        self._done.extend(lines[start:end])

    def _end_block(self) -> None:
        """A block boundary: the current line ends if it has any text (unlike ``br``, it
        never makes an empty line)."""
        line = collapse("".join(self._line))
        self._line.clear()
        if line:
            self._done.append(line)

    def text(self) -> str:
        """The lines, joined by newlines, without empty lines at either end."""
        self._end_block()
        lines = self._done
        start, end = 0, len(lines)
        while start < end and not lines[start].strip():
            start += 1
        while end > start and not lines[end - 1].strip():
            end -= 1
        return "\n".join(lines[start:end])


# -- lexbor (selectolax): the parser of CSS selection


# Elements a field reads are mostly small (a heading, a price): walking their few nodes in
# Python finds a <pre> or <br> faster than a CSS query (0.5 against 4.5 us for a <title> of
# the bench's pages; the query's cost is mostly parsing its selector). Past this many
# nodes, the query.
_SCAN_NODES = 16


def _has_breaks(node: LexborNode) -> bool:
    """Whether ``node`` is, or holds, a ``<pre>`` or a ``<br>``."""
    for count, part in enumerate(node.traverse()):
        tag = part.tag
        if tag in _BREAK_TAGS:
            return True
        if count == _SCAN_NODES:
            return node.css_first(BREAKS_CSS) is not None
    return False


def lexbor_text(node: LexborNode) -> str:
    """``node``'s text as a reader sees it (module docstring)."""
    if not _has_breaks(node):  # the common case: exactly the collapsed text
        return collapse(node.text(deep=True, separator="") or "")
    marks = node.css(BREAKS_CSS)  # node itself included when it is a <pre> or <br>
    lines = Lines()
    # The elements on the way from ``node`` down to a mark are walked; the others are read
    # whole. Iterative, so a deeply nested page cannot exhaust the interpreter's stack.
    on_path = _lexbor_ancestors(node, marks)
    stack: list[LexborNode] = [node]
    while stack:
        current = stack.pop()
        tag = current.tag
        if tag == "br":
            lines.br()
        elif tag == "pre":
            lines.pre(_lexbor_pre(current))
        elif current.mem_id in on_path:
            children = []
            child = current.child
            while child is not None:
                children.append(child)
                child = child.next
            stack.extend(reversed(children))
        elif not current.is_comment_node:
            lines.flow(current.text(deep=True, separator="") or "")
    return lines.text()


def _lexbor_ancestors(node: LexborNode, marks: list[LexborNode]) -> set[int]:
    """The ids of the elements between ``node`` (included) and each of ``marks``."""
    top = node.mem_id
    seen: set[int] = set()
    for mark in marks:
        parent = mark.parent
        while parent is not None:
            pid = parent.mem_id
            if pid in seen:
                break
            seen.add(pid)
            if pid == top:
                break
            parent = parent.parent
    return seen


def _lexbor_pre(pre: LexborNode) -> str:
    """A ``<pre>``'s text as written, a ``<br>`` inside it being a newline."""
    if pre.css_first("br") is None:
        return pre.text(deep=True, separator="") or ""
    parts = []
    for part in pre.traverse(include_text=True):
        if part.is_text_node:
            parts.append(part.text_content or "")
        elif part.tag == "br":
            parts.append("\n")
    return "".join(parts)


# -- lxml: the parser of XPath


def lxml_text(el: Any) -> str:
    """``el``'s text as a reader sees it (module docstring), as ``lexbor_text`` reads it."""
    marks = list(el.iter(*_BREAK_TAGS))  # el itself included when it is a <pre> or <br>
    if not marks:
        return collapse(str(el.text_content()))
    on_path = _lxml_ancestors(el, marks)
    lines = Lines()
    # Each entry is an element to read, or (a str) the text that follows one (its tail).
    stack: list[Any] = [el]
    while stack:
        current = stack.pop()
        if isinstance(current, str):
            lines.flow(current)
            continue
        tag = current.tag
        if tag == "br":
            lines.br()
        elif tag == "pre":
            lines.pre(_lxml_pre(current))
        elif current in on_path:
            if current.text:
                lines.flow(current.text)
            for child in reversed(current):
                if child.tail:
                    stack.append(child.tail)
                stack.append(child)
        elif isinstance(tag, str):  # comments and processing instructions give no text
            lines.flow(str(current.text_content()))
    return lines.text()


def _lxml_ancestors(el: Any, marks: list[Any]) -> set[Any]:
    """The elements between ``el`` (included) and each of ``marks``."""
    seen: set[Any] = set()
    for mark in marks:
        parent = mark.getparent()
        while parent is not None and parent not in seen:
            seen.add(parent)
            if parent is el:
                break
            parent = parent.getparent()
    return seen


def _lxml_pre(pre: Any) -> str:
    """A ``<pre>``'s text as written, a ``<br>`` inside it being a newline."""
    parts: list[str] = []
    for event, el in etree.iterwalk(pre, events=("start", "end")):
        if event == "start":
            if el.tag == "br":
                parts.append("\n")
            elif isinstance(el.tag, str) and el.text:  # not a comment
                parts.append(el.text)
        elif el is not pre and el.tail:
            parts.append(el.tail)
    return "".join(parts)
