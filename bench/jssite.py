"""A generated JavaScript-heavy site for the browser benchmark: nothing to read without JS.

``N`` pages (default 300), each an empty shell: its title, heading, text and links are
rendered in the browser by a ~150 KB script bundle from the page's data, which is itself a
script (``/data/<n>.js``, deferred, so the page is rendered by ``DOMContentLoaded``).
Around that, what real pages carry and a crawler's nodes never look at: a stylesheet, two
web fonts, 3-5 images (PNG), a hero image set as a CSS background, and "third-party"
subresources on another origin (``localhost`` instead of ``127.0.0.1``: an analytics
script, a tracking pixel and a widget script injected by JavaScript). Links are written
relative, root-relative and with fragments; every page is reachable from ``/index.html``
(page n links to n+1) and holds 20-40 links.

    .venv/bin/python -m bench.jssite [--pages 300] [--seed 11]

writes ``bench/site/js-<N>/`` (gitignored): the pages, ``pages.txt`` (every page's path)
and ``titles.json`` (path -> the title the page's JavaScript renders: a crawler that did
not run the scripts reads "Loading..." and fails the completeness check). Deterministic:
the same N and seed give the same bytes.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import time
import zlib
from typing import Any

from bench import docsite
from bench.docsite import SiteInfo

GENERATOR_VERSION = 1
PLACEHOLDER_TITLE = "Loading..."
_WORDS = [
    "render",
    "hydrate",
    "bundle",
    "module",
    "widget",
    "store",
    "router",
    "effect",
    "signal",
    "state",
    "prop",
    "slot",
    "view",
    "chart",
    "table",
    "grid",
    "panel",
    "modal",
    "toast",
    "badge",
    "token",
    "theme",
    "layout",
    "column",
    "metric",
    "series",
    "query",
    "cache",
    "stream",
    "fetch",
    "event",
    "handler",
    "vendor",
    "runtime",
    "chunk",
    "async",
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "for",
]


def _png(width: int, height: int, seed: int) -> bytes:
    """A valid RGB PNG of a deterministic gradient."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)
        green = (y * 5 + seed * 3) & 255
        rows += bytes(
            value
            for x in range(width)
            for value in ((x * 7 + seed) & 255, green, (x + y + seed) & 255)
        )

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 6))
        + chunk(b"IEND", b"")
    )


def _vendor_js(rng: random.Random, size: int) -> str:
    """A bundle of ``size`` bytes: a tiny render library and many module functions, some
    of which run at start-up (parse, compile and some execution, as a real bundle)."""
    parts = [
        "(function(){'use strict';var R=window.__R__={};",
        "R.h=function(tag,attrs,kids){var e=document.createElement(tag);"
        "for(var k in attrs){if(k==='text')e.textContent=attrs[k];else e.setAttribute(k,attrs[k]);}"
        "(kids||[]).forEach(function(c){e.appendChild(c)});return e;};",
        "R.modules=[];",
    ]
    used = sum(map(len, parts))
    n = 0
    while used < size:
        a, b, c = rng.randint(1, 97), rng.randint(1, 89), rng.choice(_WORDS)
        body = (
            f"R.modules.push(function m{n}(x){{var s=0,t='{c}';"
            f"for(var i=0;i<x;i++){{s=(s*{a}+i*{b})%1000003;}}"
            f"return t+':'+s+':'+['{rng.choice(_WORDS)}','{rng.choice(_WORDS)}'].join('-');}});\n"
        )
        parts.append(body)
        used += len(body)
        n += 1
    parts.append(
        "R.boot=function(){var out=0;for(var i=0;i<R.modules.length;i+=3)"
        "out+=R.modules[i](200).length;return out;};})();\n"
    )
    return "".join(parts)


_APP_JS = """\
(function(){'use strict';
var R=window.__R__,D=window.__DATA__,h=R.h;
R.boot();
document.title=D.title;
var main=document.getElementById('app');
main.textContent='';
main.appendChild(h('h1',{text:D.title}));
var nav=h('nav',{'class':'crumbs'},D.crumbs.map(function(c){return h('a',{href:c[0],text:c[1]})}));
main.appendChild(nav);
D.sections.forEach(function(s,i){
  var sec=h('section',{id:'s'+i},[h('h2',{text:s.heading})]);
  s.paras.forEach(function(p){
    var para=h('p',{text:p.text+' '});
    if(p.link){para.appendChild(h('a',{href:p.link[0],'class':'ref',text:p.link[1]}));}
    sec.appendChild(para);
  });
  main.appendChild(sec);
});
var related=h('ul',{'class':'related'},D.related.map(function(r){
  return h('li',{},[h('a',{href:r[0],text:r[1]})]);
}));
main.appendChild(h('aside',{},[h('h2',{text:'Related'}),related]));
var pager=h('div',{'class':'pager'},[h('a',{href:D.next[0],rel:'next',text:D.next[1]})]);
main.appendChild(pager);
D.images.forEach(function(src,i){
  main.appendChild(h('img',{src:src,alt:'figure '+i,width:'64',height:'48',loading:'eager'}));
});
var third=location.protocol+'//localhost:'+location.port;
var w=document.createElement('script');w.src=third+'/3p/widget.js';w.async=true;
document.head.appendChild(w);
var px=new Image();px.src=third+'/3p/pixel.png?p='+encodeURIComponent(location.pathname);
})();
"""
_ANALYTICS_JS = "window.__analytics__={q:[],push:function(e){this.q.push(e)}};\n"
_WIDGET_JS = (
    "(function(){var d=document.createElement('div');d.className='widget';"
    "d.textContent='chat';document.body.appendChild(d);})();\n"
)
_CSS = """\
@font-face{font-family:"Bench Sans";src:url(/assets/fonts/sans.woff2) format("woff2");}
@font-face{font-family:"Bench Mono";src:url(/assets/fonts/mono.woff2) format("woff2");}
body{font:16px/1.5 "Bench Sans",system-ui,sans-serif;margin:0;color:#222}
code,pre{font-family:"Bench Mono",monospace}
header.hero{height:120px;background:#036 url(/assets/img/hero.png) center/cover}
#app{max-width:50em;margin:0 auto;padding:1em}
section{margin:1.5em 0}a.ref{color:#06c}.pager a{font-weight:bold}
img{display:inline-block;margin:.3em;border:1px solid #ccc}
.widget{position:fixed;right:1em;bottom:1em;padding:.5em;background:#eee}
"""


def _page_paths(n_pages: int) -> list[str]:
    paths = ["/index.html"]
    for i in range(1, n_pages):
        section = i // 25
        paths.append(f"/app/c{section:02d}/item-{i}.html")
    return paths


def _rel(from_path: str, to_path: str) -> str:
    from_dir = from_path.rsplit("/", 1)[0]
    to_dir, name = to_path.rsplit("/", 1)
    if from_dir == to_dir:
        return name
    return "../" * from_dir.count("/") + to_path.lstrip("/")


def _link(rng: random.Random, here: str, to: str) -> str:
    roll = rng.random()
    if roll < 0.4:
        return to
    url = _rel(here, to)
    return url + f"#{rng.choice(_WORDS)}" if roll > 0.8 else url


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n)).capitalize() + "."


def _data(rng: random.Random, paths: list[str], titles: list[str], i: int) -> dict[str, Any]:
    here = paths[i]
    n = len(paths)
    targets = [rng.randrange(n) for _ in range(rng.randint(14, 30))]
    sections = []
    for s in range(rng.randint(3, 6)):
        paras = []
        for _ in range(rng.randint(2, 5)):
            para: dict[str, Any] = {"text": " ".join(_sentence(rng, 12) for _ in range(3))}
            if targets and rng.random() < 0.7:
                t = targets.pop()
                para["link"] = [_link(rng, here, paths[t]), titles[t]]
            paras.append(para)
        sections.append({"heading": f"{_sentence(rng, 3)[:-1]} {s + 1}", "paras": paras})
    related = [[_link(rng, here, paths[t]), titles[t]] for t in targets]
    nxt = (i + 1) % n
    return {
        "title": titles[i],
        "crumbs": [[_rel(here, "/index.html"), "Home"], [here, titles[i]]],
        "sections": sections,
        "related": related,
        "next": [_link(rng, here, paths[nxt]), "Next: " + titles[nxt]],
        "images": [f"/assets/img/f{rng.randrange(40)}.png" for _ in range(rng.randint(3, 5))],
    }


def _count_links(data: dict[str, Any]) -> int:
    """The links page data renders: breadcrumbs (2), next (1), related, in-text."""
    in_text = sum(1 for s in data["sections"] for p in s["paras"] if "link" in p)
    return 3 + len(data["related"]) + in_text


def _shell(path: str, index: int) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f"<title>{PLACEHOLDER_TITLE}</title>\n"
        '<link rel="stylesheet" href="/assets/main.css">\n'
        '<script defer src="/assets/vendor.js"></script>\n'
        f'<script defer src="/data/{index}.js"></script>\n'
        '<script defer src="/assets/app.js"></script>\n'
        "<script>(function(){var s=document.createElement('script');s.async=true;"
        "s.src=location.protocol+'//localhost:'+location.port+'/3p/analytics.js';"
        "document.head.appendChild(s);})();</script>\n"
        '</head><body><header class="hero"></header>\n'
        '<main id="app"><p class="loading">Loading...</p></main>\n'
        "<noscript>This application needs JavaScript.</noscript>\n"
        "</body></html>\n"
    )


def generate(n_pages: int = 300, seed: int = 11, name: str | None = None) -> SiteInfo:
    """Write the site (unless an identical one is there) and describe it."""
    if n_pages < 2:
        raise ValueError("a site needs at least 2 pages")
    name = name or f"js-{n_pages}"
    root = docsite.SITE_ROOT / name
    params: dict[str, Any] = {
        "version": GENERATOR_VERSION,
        "pages": n_pages,
        "seed": seed,
        "kind": "js",
    }
    existing = docsite.reuse_or_clear(name, root, params, "titles.json")
    if existing is not None:
        return existing
    rng = random.Random(seed)
    paths = _page_paths(n_pages)
    titles = ["Home"] + [
        f"{rng.choice(_WORDS).capitalize()} {rng.choice(_WORDS)} {i}" for i in range(1, n_pages)
    ]
    for sub in ("assets/img", "assets/fonts", "data", "3p"):
        (root / sub).mkdir(parents=True)
    (root / "assets" / "vendor.js").write_text(_vendor_js(rng, 150_000))
    (root / "assets" / "app.js").write_text(_APP_JS)
    (root / "assets" / "main.css").write_text(_CSS)
    (root / "assets" / "img" / "hero.png").write_bytes(_png(320, 120, 1))
    for k in range(40):
        (root / "assets" / "img" / f"f{k}.png").write_bytes(_png(64, 48, k))
    for font in ("sans", "mono"):  # not a real font: the browser requests it all the same
        (root / "assets" / "fonts" / f"{font}.woff2").write_bytes(rng.randbytes(24_000))
    (root / "3p" / "analytics.js").write_text(_ANALYTICS_JS)
    (root / "3p" / "widget.js").write_text(_WIDGET_JS)
    (root / "3p" / "pixel.png").write_bytes(_png(1, 1, 0))
    total_bytes = total_links = 0
    for i, path in enumerate(paths):
        data = _data(rng, paths, titles, i)
        script = f"window.__DATA__={json.dumps(data, separators=(',', ':'))};\n"
        (root / "data" / f"{i}.js").write_text(script)
        shell = _shell(path, i)
        file = root / path.lstrip("/")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(shell)
        total_bytes += len(shell) + len(script)
        total_links += _count_links(data)
    (root / "pages.txt").write_text("\n".join(paths) + "\n")
    (root / "titles.json").write_text(json.dumps(dict(zip(paths, titles, strict=True)), indent=0))
    return docsite.stamp_site(name, root, params, total_bytes, total_links)


def titles(site: SiteInfo) -> dict[str, str]:
    """Path -> the title the page's JavaScript renders."""
    found: dict[str, str] = json.loads((site.root / "titles.json").read_text())
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--name", help="directory under bench/site/ (default js-<pages>)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    site = generate(args.pages, args.seed, args.name)
    print(
        f"{site.root}: {site.pages} pages, {site.total_links / site.pages:.0f} links/page, "
        f"{time.monotonic() - started:.1f}s"
    )


if __name__ == "__main__":
    main()
