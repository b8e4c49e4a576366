"""The Page the nodes act on, and the elements they select.

Both engines end in the same place: the http fetcher hands over the response body, the
browser fetcher the rendered DOM serialized as HTML (worker/fetchers/dom.py), and one
parser reads either. That is what makes the records of a static page identical across
engines. CSS runs on lexbor (selectolax), the faster parser by measurement
(bench/results/ARCHIVE.md); XPath, which lexbor lacks, runs on an lxml tree built only when
a workflow asks for XPath.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any, Protocol

import lxml.html
from lxml import etree
from selectolax.lexbor import LexborHTMLParser, LexborNode
from yarl import URL

from nodes.text import lexbor_text, lxml_text

# The browser engine passes a coroutine that runs JavaScript in the live page; the http
# engine has none, and validation keeps script nodes out of its phases.
Evaluate = Callable[[str, float], Awaitable[Any]]


class Element(Protocol):
    """A node of the document, whichever parser holds it."""

    def css(self, selector: str) -> list[Element]: ...
    def css_first(self, selector: str) -> Element | None: ...
    def xpath(self, expr: str) -> list[Element | str]: ...
    def text(self) -> str: ...
    def readable_text(self) -> str: ...
    def inner_html(self) -> str: ...
    def attr(self, name: str) -> str | None: ...


class LexborElement:
    __slots__ = ("_node",)

    def __init__(self, node: LexborNode) -> None:
        self._node = node

    # lexbor matches a node's selector against the node itself too; nested fields mean
    # "inside this element" (as querySelectorAll does), so the node itself is left out.
    def css(self, selector: str) -> list[Element]:
        own = self._node.mem_id
        return [LexborElement(n) for n in self._node.css(selector) if n.mem_id != own]

    def css_first(self, selector: str) -> Element | None:
        node = self._node.css_first(selector)
        if node is not None and node.mem_id == self._node.mem_id:
            # The node itself comes first in document order; the next match is the answer.
            matches = self._node.css(selector)
            node = matches[1] if len(matches) > 1 else None
        return None if node is None else LexborElement(node)

    def xpath(self, expr: str) -> list[Element | str]:
        # Rare (XPath inside a CSS-selected parent): re-read this subtree with lxml and
        # evaluate relative to the element itself (not the parent lxml wraps it in).
        html = self._node.html or ""
        wrapper = lxml.html.fragment_fromstring(html, create_parent="div")
        tag = self._node.tag
        context = wrapper[0] if len(wrapper) == 1 and wrapper[0].tag == tag else wrapper
        return LxmlElement(context).xpath("." + expr if expr.startswith("/") else expr)

    def text(self) -> str:
        return self._node.text(deep=True, separator="") or ""

    def readable_text(self) -> str:
        """The text as a reader sees it: whitespace collapsed, the lines of ``<pre>`` and
        ``<br>`` kept (nodes/text.py)."""
        return lexbor_text(self._node)

    def inner_html(self) -> str:
        return self._node.inner_html or ""

    def attr(self, name: str) -> str | None:
        attrs = self._node.attrs  # a view: cheaper than building the attributes dict
        value = attrs.get(name)
        if value is None and name in attrs:
            return ""  # a bare attribute (<input checked>) is present, with an empty value
        return value


class LxmlElement:
    __slots__ = ("_el",)

    def __init__(self, el: Any) -> None:
        self._el = el

    # cssselect also matches the element itself (descendant-or-self); left out as above.
    def css(self, selector: str) -> list[Element]:
        own = self._el
        return [LxmlElement(e) for e in own.cssselect(selector) if e is not own]

    def css_first(self, selector: str) -> Element | None:
        found = self.css(selector)
        return found[0] if found else None

    def xpath(self, expr: str) -> list[Element | str]:
        out: list[Element | str] = []
        result = self._el.xpath(expr)
        if not isinstance(result, list):  # count(), string(), boolean() give scalars
            return [_scalar(result)]
        for item in result:
            if isinstance(item, etree._Element):
                out.append(LxmlElement(item))
            else:
                out.append(str(item))
        return out

    def text(self) -> str:
        return str(self._el.text_content())

    def readable_text(self) -> str:
        """As ``LexborElement.readable_text``, from the lxml tree."""
        return lxml_text(self._el)

    def inner_html(self) -> str:
        parts = [self._el.text or ""]
        parts.extend(etree.tostring(c, encoding="unicode", method="html") for c in self._el)
        return "".join(parts)

    def attr(self, name: str) -> str | None:
        value = self._el.get(name)
        return None if value is None else str(value)


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(eq=False)
class Page:
    """A fetched (or rendered) document and what is known of its fetch."""

    url: str  # the final URL, after redirects
    html: str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    requested_url: str | None = None
    evaluate: Evaluate | None = None  # browser engine only
    elapsed_s: float = 0.0

    @cached_property
    def _lexbor(self) -> LexborHTMLParser:
        return LexborHTMLParser(self.html)

    @cached_property
    def _lxml(self) -> Any:
        if not self.html.strip():
            return lxml.html.fromstring("<html></html>")
        try:
            return lxml.html.document_fromstring(self.html)
        except (etree.ParserError, ValueError):
            # ValueError: str with an XML encoding declaration; read it as bytes instead.
            return lxml.html.document_fromstring(self.html.encode("utf-8"))

    @property
    def root(self) -> Element:
        """The document root for CSS selection."""
        root = self._lexbor.root
        if root is None:
            return LexborElement(LexborHTMLParser("<html></html>").root)  # type: ignore[arg-type]
        return LexborElement(root)

    def css(self, selector: str) -> list[Element]:
        return [LexborElement(n) for n in self._lexbor.css(selector)]

    def css_first(self, selector: str) -> Element | None:
        """The first match only: lexbor stops searching there (the common single field)."""
        node = self._lexbor.css_first(selector)
        return None if node is None else LexborElement(node)

    def xpath(self, expr: str) -> list[Element | str]:
        return LxmlElement(self._lxml).xpath(expr)

    @cached_property
    def base_url(self) -> str:
        """What relative links resolve against: ``<base href>`` if present, else the URL."""
        base = self._lexbor.css_first("base[href]")
        href = base.attributes.get("href") if base is not None else None
        if href and href.strip():
            try:
                return str(URL(self.url).join(URL(href.strip())))
            except ValueError:
                return self.url
        return self.url

    @cached_property
    def _base(self) -> URL:
        # Parsed once per page, not once per link. A fragment on the base must not leak into
        # query-only references (yarl keeps it there).
        return URL(self.base_url).with_fragment(None)

    def absolute(self, href: str) -> str | None:
        """``href`` made absolute against ``base_url`` as a browser would, any scheme and
        fragment kept (extracted data, not a crawl target); None if it is no URL."""
        href = href.strip()
        if not href:
            return None
        try:
            return str(self._base.join(URL(href)))
        except (ValueError, TypeError):
            return None

    def resolve(self, href: str) -> str | None:
        """An absolute http(s) URL for ``href``, or None for what cannot be crawled."""
        href = href.strip()
        if not href or href.startswith("#"):
            return None
        return _resolve(self._join_base(href), href)

    def _join_base(self, href: str) -> str:
        """The part of the base URL that decides how ``href`` resolves (RFC 3986 §5.2): the
        whole base for a query-only reference, its directory for a relative path, its
        origin for an absolute path, nothing for an absolute URL. Pages of one site share
        these, so the join below is mostly a cache hit."""
        if href.startswith("?"):
            return self._base_str
        if "://" in href[:12]:
            return ""
        if href.startswith("/"):  # an absolute path, or a scheme-relative //host/path
            return self._base_origin
        return self._base_dir

    @cached_property
    def _base_str(self) -> str:
        return str(self._base)

    @cached_property
    def _base_dir(self) -> str:
        path = self._base.raw_path or "/"
        return self._base_origin + path[: path.rfind("/") + 1]

    @cached_property
    def _base_origin(self) -> str:
        try:
            return str(self._base.origin())
        except ValueError:  # not an absolute http(s) base: no shortcut, join to all of it
            return self._base_str


@lru_cache(maxsize=8192)  # the links pages share (navigation) are the hits
def _resolve(base: str, href: str) -> str | None:
    """``href`` joined to ``base`` as a crawl target: http(s), with a host, no fragment."""
    try:
        url = URL(base).join(URL(href)) if base else URL(href)
    except (ValueError, TypeError):
        return None
    if url.scheme not in ("http", "https") or not url.host:
        return None
    return str(url.with_fragment(None))
