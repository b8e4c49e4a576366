"""Which HTML parser should the Page use? Measured, on pages shaped like what crawls read.

Each candidate does what a crawl does on every page: parse, select every ``a[href]`` and read
its href, read the <title>. Pages are generated documentation-like HTML (10-80 KB, 50-150
links: a sidebar, headings, paragraphs with inline links, code blocks, tables), the same
pages for every parser, decoded ``str`` as the Page holds them.

    .venv/bin/python -m bench.parsers [--pages 200] [--repeat 5]

The modest backend (``selectolax.parser.HTMLParser``) was removed in selectolax 1.0; it is
reported as unavailable unless an older selectolax is installed.
"""

from __future__ import annotations

import argparse
import gc
import html
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser as StdlibHTMLParser
from typing import Any

_TEXT = (
    "request response crawler parser worker queue phase node selector extract link page "
    "browser session timeout retry backoff header charset redirect status record export "
    "configure install deploy schema field marker depth scope politeness robots limit "
    "the a of to and in is for with on that by this be are from as it can or when which"
)
WORDS = _TEXT.split()

Extract = Callable[[str], tuple[str | None, list[str]]]


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def make_page(rng: random.Random, index: int, min_kb: int = 10, max_kb: int = 80) -> str:
    """One documentation-like page of ``min_kb``-``max_kb`` KB with 50-150 links."""
    target = rng.randint(min_kb, max_kb) * 1024
    n_links = rng.randint(50, 149)  # + the footer's link
    nav_links = rng.randint(20, min(60, n_links - 10))
    inline_links = n_links - nav_links
    title = f"{_sentence(rng, 4)[:-1]} | Docs {index}"
    nav = "\n".join(
        f'<li class="toc-l{rng.randint(1, 3)}"><a class="reference internal" '
        f'href="{"../" * rng.randint(0, 2)}section/{rng.randint(1, 500)}.html'
        f'{"#" + rng.choice(WORDS) if rng.random() < 0.3 else ""}">{_sentence(rng, 3)}</a></li>'
        for _ in range(nav_links)
    )
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        '<link rel="stylesheet" href="/_static/theme.css"><script src="/_static/doc.js"></script>',
        '</head><body><div class="wrapper"><nav class="sidebar" role="navigation">',
        f'<div class="search"><form action="/search"><input name="q"></form></div><ul>{nav}</ul>',
        '</nav><main class="document"><div class="body" role="main">',
        f"<h1>{html.escape(title)}</h1>",
    ]
    size = sum(map(len, parts))
    links_left = inline_links
    section = 0
    while size < target or links_left > 0:
        section += 1
        chunk = [f'<section id="s{section}"><h2>{_sentence(rng, 5)}</h2>']
        for _ in range(rng.randint(2, 5)):
            words = [html.escape(_sentence(rng, rng.randint(8, 30)))]
            if links_left > 0 and rng.random() < 0.8:
                href = rng.choice(
                    [
                        f"https://example.org/{rng.choice(WORDS)}/{rng.randint(1, 9999)}",
                        f"/api/{rng.choice(WORDS)}.html#{rng.choice(WORDS)}",
                        f"{rng.choice(WORDS)}.html?v={rng.randint(1, 9)}&amp;lang=en",
                    ]
                )
                words.append(f'<a href="{href}"><code>{rng.choice(WORDS)}()</code></a>')
                links_left -= 1
            words.append(html.escape(_sentence(rng, rng.randint(5, 20))))
            chunk.append(f"<p>{' '.join(words)}</p>")
        if rng.random() < 0.5:
            code = "\n".join(
                f'<span class="k">{rng.choice(WORDS)}</span> = {rng.randint(0, 99)}'
                for _ in range(rng.randint(3, 15))
            )
            chunk.append(f'<div class="highlight"><pre>{code}</pre></div>')
        if rng.random() < 0.3:
            rows = "".join(
                f"<tr><td>{rng.choice(WORDS)}</td><td>{_sentence(rng, 6)}</td></tr>"
                for _ in range(rng.randint(3, 10))
            )
            chunk.append(f'<table class="docutils"><tbody>{rows}</tbody></table>')
        chunk.append("</section>")
        piece = "\n".join(chunk)
        parts.append(piece)
        size += len(piece)
        if size > target * 1.5 and links_left > 0:  # short pages with many links: dense list
            items = (f'<li><a href="/ref/{i}.html">ref {i}</a></li>' for i in range(links_left))
            parts.append(f"<ul>{''.join(items)}</ul>")
            links_left = 0
    parts.append(
        '</div></main></div><footer><a href="/">Home</a> &copy; Trawl docs</footer></body></html>'
    )
    return "\n".join(parts)


def make_pages(count: int, seed: int = 1, min_kb: int = 10, max_kb: int = 80) -> list[str]:
    """``count`` pages, the same for the same seed."""
    rng = random.Random(seed)
    return [make_page(rng, i, min_kb, max_kb) for i in range(count)]


# --- candidates ---------------------------------------------------------------------------------


def lexbor() -> Extract:
    from selectolax.lexbor import LexborHTMLParser

    def extract(text: str) -> tuple[str | None, list[str]]:
        tree = LexborHTMLParser(text)
        node = tree.css_first("title")
        hrefs = [a.attrs.get("href") or "" for a in tree.css("a[href]")]
        return (node.text() if node is not None else None), hrefs

    return extract


def modest() -> Extract:
    try:
        from selectolax.parser import HTMLParser  # type: ignore[attr-defined]
    except ImportError as exc:
        from importlib.metadata import version

        raise ImportError(f"removed in selectolax 1.0; installed: {version('selectolax')}") from exc

    def extract(text: str) -> tuple[str | None, list[str]]:
        tree = HTMLParser(text)
        node = tree.css_first("title")
        hrefs = [a.attributes.get("href") or "" for a in tree.css("a[href]")]
        return (node.text() if node is not None else None), hrefs

    return extract


def lxml_cssselect() -> Extract:
    import lxml.html
    from lxml.cssselect import CSSSelector

    # Compiled once, as a workflow's selectors would be. Any: lxml-stubs type these loosely.
    links: Any = CSSSelector("a[href]")
    title: Any = CSSSelector("title")

    def extract(text: str) -> tuple[str | None, list[str]]:
        doc = lxml.html.document_fromstring(text)
        found = title(doc)
        return (found[0].text_content() if found else None), [a.get("href") for a in links(doc)]

    return extract


def lxml_xpath() -> Extract:
    import lxml.html
    from lxml import etree

    hrefs: Any = etree.XPath("//a/@href")
    title: Any = etree.XPath("string(//title)")

    def extract(text: str) -> tuple[str | None, list[str]]:
        doc = lxml.html.document_fromstring(text)
        return str(title(doc)), [str(h) for h in hrefs(doc)]

    return extract


def stdlib() -> Extract:
    class Collector(StdlibHTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.hrefs: list[str] = []
            self.in_title = False
            self.title: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "a":
                for name, value in attrs:
                    if name == "href" and value is not None:
                        self.hrefs.append(value)
                        break
            elif tag == "title":
                self.in_title = True

        def handle_endtag(self, tag: str) -> None:
            if tag == "title":
                self.in_title = False

        def handle_data(self, data: str) -> None:
            if self.in_title:
                self.title.append(data)

    def extract(text: str) -> tuple[str | None, list[str]]:
        parser = Collector()
        parser.feed(text)
        parser.close()
        return "".join(parser.title), parser.hrefs

    return extract


CANDIDATES: dict[str, Callable[[], Extract]] = {
    "selectolax lexbor": lexbor,
    "selectolax modest": modest,
    "lxml.html + cssselect": lxml_cssselect,
    "lxml.html + xpath": lxml_xpath,
    "stdlib html.parser": stdlib,
}


@dataclass
class Result:
    name: str
    pages_per_s: float | None
    mb_per_s: float | None
    links: int | None
    note: str = ""


def measure(name: str, factory: Callable[[], Extract], pages: list[str], repeat: int) -> Result:
    """Best of ``repeat`` passes over all pages (the least disturbed by the machine)."""
    try:
        extract = factory()
    except ImportError as exc:
        return Result(name, None, None, None, f"unavailable: {exc}")
    total_links = sum(len(extract(p)[1]) for p in pages)  # warm-up and sanity count
    total_mb = sum(len(p.encode()) for p in pages) / 1e6
    times = []
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        for page in pages:
            extract(page)
        times.append(time.perf_counter() - started)
    best = min(times)
    spread = (statistics.pstdev(times) / statistics.mean(times)) if len(times) > 1 else 0.0
    return Result(
        name, len(pages) / best, total_mb / best, total_links, f"±{spread:.0%} across passes"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", action="append", help="substring of a parser name")
    args = parser.parse_args(argv)

    pages = make_pages(args.pages, args.seed)
    sizes = sorted(len(p.encode()) for p in pages)
    print(
        f"{len(pages)} pages, {sizes[0] // 1024}-{sizes[-1] // 1024} KB "
        f"(median {sizes[len(sizes) // 2] // 1024} KB), "
        f"{sum(sizes) / 1e6:.1f} MB; best of {args.repeat} passes; parse + a[href] + title"
    )
    results = [
        measure(name, factory, pages, args.repeat)
        for name, factory in CANDIDATES.items()
        if not args.only or any(o in name for o in args.only)
    ]
    baseline = next((r for r in results if r.pages_per_s), None)
    print(f"{'parser':<24}{'pages/s':>10}{'MB/s':>9}{'links':>9}{'vs first':>10}  note")
    for r in results:
        if r.pages_per_s is None or r.mb_per_s is None:
            print(f"{r.name:<24}{'-':>10}{'-':>9}{'-':>9}{'-':>10}  {r.note}")
            continue
        ratio = r.pages_per_s / baseline.pages_per_s if baseline and baseline.pages_per_s else 1
        print(
            f"{r.name:<24}{r.pages_per_s:>10.0f}{r.mb_per_s:>9.1f}{r.links:>9}"
            f"{ratio:>9.2f}x  {r.note}"
        )
    counts = {r.links for r in results if r.links is not None}
    if len(counts) > 1:
        print(f"note: parsers disagree on the number of links: {sorted(counts)}")


if __name__ == "__main__":
    main()
