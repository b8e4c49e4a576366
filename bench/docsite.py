"""A generated documentation site for crawl benchmarks: deterministic, shaped like real docs.

``N`` pages (default 5,000) in sections of 40, each page 10-80 KB with 50-150 links: a
sidebar (home, the neighbouring sections, every page of its own section), previous/next
links, an "on this page" list and heading anchors (fragments of the page itself), and
in-text links to pages anywhere in the site, written the ways real docs write them
(relative, root-relative, with and without fragments). Every link stays on the site and
every page is reachable from ``/index.html`` (section k's sidebar reaches section k+8).

    .venv/bin/python -m bench.docsite [--pages 5000] [--seed 7] [--name docs-5000]

writes ``bench/site/<name>/`` (gitignored): the pages, ``_static/``, ``pages.txt`` (the
root-relative path of every page, the list a complete crawl must find) and ``site.json``
(the parameters and totals; a site whose site.json matches is not generated again).
"""

from __future__ import annotations

import argparse
import html
import json
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SITE_ROOT = Path(__file__).resolve().parent / "site"
GENERATOR_VERSION = 5
SECTION_SIZE = 40
SECTION_WINDOW = 8  # the sidebar lists sections k-8 .. k+8

_WORDS = [
    "request",
    "response",
    "crawler",
    "parser",
    "worker",
    "queue",
    "phase",
    "node",
    "selector",
    "extract",
    "link",
    "page",
    "browser",
    "session",
    "timeout",
    "retry",
    "backoff",
    "header",
    "charset",
    "redirect",
    "status",
    "record",
    "export",
    "configure",
    "install",
    "deploy",
    "schema",
    "field",
    "marker",
    "depth",
    "scope",
    "politeness",
    "robots",
    "limit",
    "cache",
    "proxy",
    "cookie",
    "token",
    "stream",
    "buffer",
    "socket",
    "handler",
    "router",
    "model",
    "view",
    "template",
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "for",
    "with",
    "on",
    "that",
    "by",
    "this",
    "be",
    "are",
    "from",
    "as",
    "it",
    "can",
    "or",
    "when",
    "which",
]
_TOPICS = [
    "guide",
    "api",
    "reference",
    "tutorial",
    "howto",
    "concepts",
    "config",
    "deploy",
    "cli",
    "plugins",
    "extending",
    "internals",
    "migration",
    "faq",
    "security",
    "testing",
    "storage",
    "network",
    "events",
    "logging",
    "metrics",
]


@dataclass(frozen=True)
class SiteInfo:
    """Where a generated site is and what it holds."""

    name: str
    root: Path
    pages: int
    seed: int
    total_bytes: int
    total_links: int

    @property
    def pages_file(self) -> Path:
        return self.root / "pages.txt"

    def paths(self) -> list[str]:
        """The root-relative path of every page ("/index.html", "/s001-api/foo-12.html")."""
        return self.pages_file.read_text().split()


class _Text:
    """Pre-generated sentences, so 200+ MB of prose costs seconds, not minutes."""

    def __init__(self, rng: random.Random, count: int = 4000) -> None:
        self.rng = rng
        self.sentences = [self._sentence(rng.randint(6, 24)) for _ in range(count)]
        self.short = [self._sentence(rng.randint(2, 5))[:-1] for _ in range(count // 4)]

    def _sentence(self, n: int) -> str:
        words = " ".join(self.rng.choice(_WORDS) for _ in range(n))
        return html.escape(words.capitalize() + ".")

    def para(self, n: int) -> str:
        start = self.rng.randrange(len(self.sentences) - n)
        return " ".join(self.sentences[start : start + n])

    def title(self) -> str:
        return self.rng.choice(self.short).capitalize()


def _layout(n_pages: int, rng: random.Random) -> tuple[list[str], list[list[int]]]:
    """Page paths (index 0 is the home page) and, per section, its page indexes."""
    paths = ["/index.html"]
    sections: list[list[int]] = []
    remaining = n_pages - 1
    k = 0
    while remaining > 0:
        name = f"s{k:03d}-{_TOPICS[k % len(_TOPICS)]}"
        size = min(SECTION_SIZE, remaining)
        members = []
        for j in range(size):
            if j == 0:
                path = f"/{name}/index.html"
            else:
                path = f"/{name}/{rng.choice(_WORDS)}-{rng.choice(_WORDS)}-{j}.html"
            members.append(len(paths))
            paths.append(path)
        sections.append(members)
        remaining -= size
        k += 1
    return paths, sections


def _rel(from_path: str, to_path: str) -> str:
    """``to_path`` relative to the directory of ``from_path`` (both root-relative)."""
    from_dir = from_path.rsplit("/", 1)[0]
    to_dir, to_name = to_path.rsplit("/", 1)
    if from_dir == to_dir:
        return to_name
    up = "../" * from_dir.count("/")
    # No "..//x": browsers (and WHATWG URL parsers) keep that empty segment as "//x".
    return f"{up}{to_dir.lstrip('/')}/{to_name}" if to_dir else f"{up}{to_name}"


@dataclass
class _Layout:
    """The whole site's shape, shared by every page's generation."""

    paths: list[str]
    sections: list[list[int]]
    section_of: list[int]
    titles: list[str]
    text: _Text


def _nav(site: _Layout, index: int) -> str:
    """The sidebar: home, the neighbouring sections, every page of this page's section."""
    path = site.paths[index]
    here = site.section_of[index]
    nav = [f'<li class="toc-home"><a href="{_rel(path, "/index.html")}">Documentation</a></li>']
    lo, hi = max(0, here - SECTION_WINDOW), min(len(site.sections), here + SECTION_WINDOW + 1)
    for k in range(lo, hi):
        first = site.sections[k][0]
        nav.append(
            f'<li class="toc-l1"><a class="reference internal" '
            f'href="{_rel(path, site.paths[first])}">{site.titles[first]}</a>'
        )
        if k == here:
            items = "".join(
                f'<li class="toc-l2"><a class="reference internal" '
                f'href="{_rel(path, site.paths[m])}">{site.titles[m]}</a></li>'
                for m in site.sections[k]
            )
            nav.append(f"<ul>{items}</ul>")
        nav.append("</li>")
    return "".join(nav)


def _href(site: _Layout, index: int, to: int, fragment: bool = False) -> str:
    """A link from page ``index`` to page ``to``, written one of the ways docs write them."""
    rng = site.text.rng
    path = site.paths[index]
    url = site.paths[to] if rng.random() < 0.3 else _rel(path, site.paths[to])
    if fragment:
        url += f"#{rng.choice(_WORDS)}-{rng.randint(1, 9)}"
    return url


def _section(site: _Layout, index: int, number: int, budget: int, links: int) -> str:
    """One <section> of about ``budget`` bytes of prose with ``links`` in-text links."""
    text = site.text
    rng = text.rng
    chunk = [
        f'<section id="s{number}"><h2>{text.title()}'
        f'<a class="headerlink" href="#s{number}">&para;</a></h2>'
    ]
    used = 0
    while used < budget or links > 0:
        # Past the byte budget, the links still owed go in one short sentence each.
        body = text.para(rng.randint(2, 6)) if used < budget else ""
        if links > 0:
            href = _href(site, index, rng.randrange(len(site.paths)), rng.random() < 0.3)
            body += (
                f' See <a class="reference internal" href="{href}">'
                f"<code>{rng.choice(_WORDS)}()</code></a> for {text.para(1).lower()}"
            )
            links -= 1
        piece = f"<p>{body}</p>"
        if rng.random() < 0.15:
            code = "\n".join(
                f'<span class="k">{rng.choice(_WORDS)}</span> = '
                f'<span class="m">{rng.randint(0, 999)}</span>'
                for _ in range(rng.randint(3, 12))
            )
            piece += f'<div class="highlight"><pre>{code}</pre></div>'
        elif rng.random() < 0.08:
            rows = "".join(
                f"<tr><td><code>{rng.choice(_WORDS)}</code></td><td>{text.para(1)}</td></tr>"
                for _ in range(rng.randint(3, 8))
            )
            piece += f'<table class="docutils"><tbody>{rows}</tbody></table>'
        chunk.append(piece)
        used += len(piece)
    chunk.append("</section>\n")
    return "\n".join(chunk)


def _page(site: _Layout, index: int) -> tuple[str, int]:
    """Page ``index``'s HTML and its number of links."""
    rng = site.text.rng
    path = site.paths[index]
    target_bytes = rng.randint(10, 80) * 1024
    target_links = rng.randint(50, 148)  # + breadcrumb and footer-side links: at most 150
    nav = _nav(site, index)
    n_sections = max(3, target_bytes // 6000)
    toc = "".join(
        f'<li><a class="reference internal" href="#s{i}">{site.text.title()}</a></li>'
        for i in range(1, n_sections + 1)
    )
    prev_next = []
    if index > 0:
        prev_next.append(f'<a class="prev" rel="prev" href="{_href(site, index, index - 1)}">')
    if index + 1 < len(site.paths):
        prev_next.append(f'<a class="next" rel="next" href="{_href(site, index, index + 1)}">')
    prev_next = [f"{a}{'Previous' if 'prev' in a else 'Next'}</a>" for a in prev_next]
    title = site.titles[index]
    head = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title} | Trawl bench docs</title>\n"
        f'<link rel="stylesheet" href="{_rel(path, "/_static/theme.css")}">\n'
        f'<script defer src="{_rel(path, "/_static/doc.js")}"></script>\n'
        '</head><body><div class="wrapper">\n<nav class="sidebar" role="navigation">'
        '<div class="search"><form action="/search.html"><input name="q"></form></div>\n'
        f"<ul>{nav}</ul></nav>\n"
        '<main class="document"><div class="body" role="main">\n'
        f'<nav class="breadcrumb"><a href="{_rel(path, "/index.html")}">Docs</a> &raquo; '
        f"{title}</nav>\n<h1>{title}</h1>\n"
        f'<div class="contents"><p>On this page</p><ul>{toc}</ul></div>\n'
    )
    inline_left = max(0, target_links - head.count("<a ") - n_sections - len(prev_next))
    per_section = -(-inline_left // n_sections)
    # Minus the overshoot of a section's last paragraph, so pages stay under the target.
    budget = max(1600, (target_bytes - len(head) - 2048) // n_sections - 800)
    parts = [head]
    for number in range(1, n_sections + 1):
        links = min(per_section, inline_left)
        inline_left -= links
        parts.append(_section(site, index, number, budget, links))
    parts.append(
        f'</div><div class="related">{" ".join(prev_next)}</div></main></div>\n'
        "<footer>&copy; Trawl benchmark docs. Generated by bench/docsite.py.</footer>"
        "</body></html>\n"
    )
    page = "".join(parts)
    return page, page.count("<a ")


_CSS = (
    "body{font:16px/1.5 system-ui,sans-serif;margin:0}.wrapper{display:flex}"
    ".sidebar{width:18em;padding:1em;background:#f6f6f6;font-size:14px}"
    ".sidebar ul{list-style:none;padding-left:1em}"
    ".document{flex:1;padding:1em 2em;max-width:52em}"
    ".highlight pre{background:#f8f8f8;padding:.6em;overflow:auto}"
    ".k{color:#007020}.m{color:#208050}"
    "table.docutils td{border:1px solid #ddd;padding:.2em .5em}.headerlink{visibility:hidden}"
    "h2:hover .headerlink{visibility:visible}footer{padding:1em;color:#888}\n"
)
_JS = (
    "document.addEventListener('DOMContentLoaded',()=>{for(const p of "
    "document.querySelectorAll('.highlight pre')){const b=document.createElement('button');"
    "b.textContent='copy';b.onclick=()=>navigator.clipboard&&navigator.clipboard.writeText("
    "p.innerText);p.parentNode.insertBefore(b,p);}});\n"
)


def reuse_or_clear(name: str, root: Path, params: dict[str, Any], marker: str) -> SiteInfo | None:
    """The site already at ``root`` when its stamp (``site.json``) holds ``params`` (with
    ``pages`` and ``seed``) and its file ``marker`` is there; else None, with ``root``
    removed for a fresh build."""
    stamp = root / "site.json"
    if stamp.exists():
        meta = json.loads(stamp.read_text())
        if {k: meta.get(k) for k in params} == params and (root / marker).exists():
            return SiteInfo(
                name,
                root,
                params["pages"],
                params["seed"],
                meta["total_bytes"],
                meta["total_links"],
            )
    if root.exists():
        shutil.rmtree(root)
    return None


def stamp_site(
    name: str, root: Path, params: dict[str, Any], total_bytes: int, total_links: int
) -> SiteInfo:
    """Write the built site's stamp (``site.json``: ``params`` and its totals); the site."""
    (root / "site.json").write_text(
        json.dumps({**params, "total_bytes": total_bytes, "total_links": total_links}, indent=1)
    )
    return SiteInfo(name, root, params["pages"], params["seed"], total_bytes, total_links)


def generate(n_pages: int = 5000, seed: int = 7, name: str | None = None) -> SiteInfo:
    """Write the site (unless an identical one is there) and describe it."""
    if n_pages < 2:
        raise ValueError("a site needs at least 2 pages")
    name = name or f"docs-{n_pages}"
    root = SITE_ROOT / name
    params: dict[str, Any] = {"version": GENERATOR_VERSION, "pages": n_pages, "seed": seed}
    existing = reuse_or_clear(name, root, params, "pages.txt")
    if existing is not None:
        return existing
    rng = random.Random(seed)
    paths, sections = _layout(n_pages, rng)
    section_of = [-1] * len(paths)
    for k, members in enumerate(sections):
        for m in members:
            section_of[m] = k
    text = _Text(rng)
    titles = ["Documentation"] + [f"{text.title()} {i}" for i in range(1, len(paths))]
    site = _Layout(paths, sections, section_of, titles, text)
    (root / "_static").mkdir(parents=True)
    (root / "_static" / "theme.css").write_text(_CSS)
    (root / "_static" / "doc.js").write_text(_JS)
    total_bytes = total_links = 0
    for index, path in enumerate(paths):
        body, links = _page(site, index)
        data = body.encode()
        file = root / path.lstrip("/")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)
        total_bytes += len(data)
        total_links += links
    (root / "pages.txt").write_text("\n".join(paths) + "\n")
    return stamp_site(name, root, params, total_bytes, total_links)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--name", help="directory under bench/site/ (default docs-<pages>)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    site = generate(args.pages, args.seed, args.name)
    print(
        f"{site.root}: {site.pages} pages, {site.total_bytes / 1e6:.0f} MB "
        f"(mean {site.total_bytes / site.pages / 1024:.0f} KB), "
        f"{site.total_links / site.pages:.0f} links/page, {time.monotonic() - started:.1f}s"
    )


if __name__ == "__main__":
    main()
