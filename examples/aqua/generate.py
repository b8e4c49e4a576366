"""The Aqua shop, generated from a seed, and the answer a crawl of it must give.

The site is a model first (categories, paginated listings, products) and HTML second, so
``expected`` reads the same model the pages were written from: the records of
``aqua.yaml`` (and ``aqua-http.yaml``) are known exactly, including depth, without
crawling. Everything comes from one ``random.Random(seed)`` consumed in a fixed order,
so a seed always gives the same bytes.

The site carries the traps a real shop has and the workflow must handle: tracking
parameters and fragments on links, relative links (``../../p/…``, ``?page=3``), products
repeated across listing pages, broken product links (404), a discontinued section the
filter excludes, a private section robots.txt forbids, and fields only JavaScript
renders (``.rating``, the reviews in ``window.__PRODUCT__``).

``python -m examples.aqua.generate --out DIR`` writes the expected answer as files.
"""

from __future__ import annotations

import argparse
import html
import json
import random
import re
import struct
import sys
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import urlencode

from workflows.urls import canonicalize

WORKFLOW_NAME = "aqua-shop"
IGNORE_QUERY_PARAMS: tuple[str, ...] = ("utm_*",)
DEFAULT_BASE_URL = "http://127.0.0.1:8765"
PRODUCT_PHASE = "product"
PRODUCT_MARKER = "product"
SHOP_NAME = "Aqua Shop"

HTML_TYPE = "text/html; charset=utf-8"
Engine = Literal["browser", "http"]
LinkKind = Literal["product", "broken", "discontinued"]

# Typographic characters real shops use, spelled as escapes to keep the source plain ASCII.
_TIMES = " \u00d7 "
_DASH = "\u2013"
_SEP = " \u203a "


class Resource(NamedTuple):
    """What the server answers for one path: status, Content-Type, body."""

    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Review:
    """A customer review; exists only in the page's script data, never as static HTML."""

    author: str
    stars: int
    title: str
    text: str
    date: str

    def as_json(self) -> dict[str, Any]:
        return {
            "author": self.author,
            "stars": self.stars,
            "title": self.title,
            "text": self.text,
            "date": self.date,
        }


@dataclass(frozen=True, slots=True)
class Product:
    """A product with a page at ``path``."""

    id: int
    slug: str
    name: str
    category: str  # the category's slug
    category_name: str
    price_cents: int
    price_text: str
    sku: str
    image_srcs: tuple[str, ...]  # src attributes as written, relative to the page
    specs: tuple[tuple[str, str], ...]
    stock: bool | None  # None: the page has no .stock element
    reviews: tuple[Review, ...]
    blurb: str
    related: tuple[int, ...] = ()

    @property
    def path(self) -> str:
        return f"/p/{self.id}-{self.slug}"

    @property
    def price(self) -> float:
        return self.price_cents / 100

    @property
    def image_paths(self) -> tuple[str, ...]:
        """Where the images resolve to (every src is built to resolve under /static/img/)."""
        return tuple("/static/" + src.split("/static/", 1)[1] for src in self.image_srcs)

    @property
    def rating(self) -> float | None:
        if not self.reviews:
            return None
        return round(sum(r.stars for r in self.reviews) / len(self.reviews), 1)


@dataclass(frozen=True, slots=True)
class ListingLink:
    """One ``ul.products a.product`` entry of a listing page."""

    kind: LinkKind
    path: str  # the target, canonical path
    href: str  # the href as written in the page
    name: str
    price_text: str
    bestseller: bool = False


@dataclass(frozen=True, slots=True)
class ListingPage:
    """Page ``number`` of a category; the crawl reaches it at depth ``number``."""

    category: str
    number: int
    path: str  # the site key: /c/<slug>/ or /c/<slug>/?page=N
    links: tuple[ListingLink, ...]
    next_href: str | None

    @property
    def depth(self) -> int:
        return self.number


@dataclass(frozen=True, slots=True)
class Category:
    slug: str
    name: str
    blurb: str
    nav_href: str  # as written in the home page's nav.categories
    pages: tuple[ListingPage, ...]

    @property
    def path(self) -> str:
        return f"/c/{self.slug}/"


@dataclass(frozen=True, eq=False)
class Site:
    """The generated shop: its model and every resource the server answers with."""

    seed: int
    page_size: int
    categories: tuple[Category, ...]
    products: tuple[Product, ...]
    private_links: tuple[str, ...]  # /private/ paths linked from the home nav.categories
    pages: Mapping[str, Resource]
    not_found: Resource

    @staticmethod
    def key(path: str, query: Iterable[tuple[str, str]] = ()) -> str:
        """The page key of a request: tracking parameters dropped, the rest sorted."""
        kept = sorted((k, v) for k, v in query if not k.startswith("utm_"))
        return f"{path}?{urlencode(kept)}" if kept else path

    def lookup(self, path: str, query: Iterable[tuple[str, str]] = ()) -> Resource:
        """What the shop answers for a request; unknown pages get the 404 page."""
        return self.pages.get(self.key(path, query), self.not_found)

    def listing_pages(self) -> list[ListingPage]:
        return [page for c in self.categories for page in c.pages]

    @property
    def max_depth(self) -> int:
        """The deepest page the crawl must reach (products on the last listing pages)."""
        return max(page.depth for page in self.listing_pages()) + 1


# --------------------------------------------------------------------------------------
# The catalogue: what each kind of category sells and how its products are described.

_Maker = Callable[[random.Random], tuple[str, list[tuple[str, str]]]]


def _aquarium(r: random.Random) -> tuple[str, list[tuple[str, str]]]:
    brand = r.choice(["Juwel", "Eheim", "Dennerle", "Fluval", "Aquael", "Oase"])
    series = r.choice(["Rio", "Vivaline", "Scaper's Tank", "Flex", "Opti Set", "HighLine"])
    w, d, h = r.choice([(30, 30, 35), (45, 27, 30), (60, 30, 35), (80, 35, 45), (100, 40, 50)])
    volume = w * d * h // 1000
    return f"{brand} {series} {volume} Aquarium", [
        ("Volume", f"{volume} l"),
        ("Dimensions", f"{w}{_TIMES}{d}{_TIMES}{h} cm"),
        ("Glass thickness", f"{r.choice([4, 5, 6, 8])} mm"),
        ("Lighting", f"LED, {r.randint(6, 40)} W"),
        ("Colour", r.choice(["Black", "White", "Oak", "Walnut"])),
    ]


def _filter(r: random.Random) -> tuple[str, list[tuple[str, str]]]:
    brand = r.choice(["Eheim", "Oase", "JBL", "Tetra", "Fluval", "Sera"])
    model = r.choice(["Classic", "BioMaster", "CristalProfi", "Professionel", "Ex", "fil"])
    flow = r.choice([150, 300, 450, 600, 850, 1050, 1250])
    kind = r.choice(["External Filter", "Internal Filter", "Hang-on Filter"])
    return f"{brand} {model} {flow // 10 * 10 // 2} {kind}", [
        ("Flow rate", f"{flow} l/h"),
        ("Power", f"{r.randint(3, 25)} W"),
        ("Suitable for", f"up to {flow // 3 // 10 * 10} l"),
        ("Filter media", r.choice(["Sponge, ceramic rings", "Sponge only", "Bio balls, fleece"])),
    ]


def _lighting(r: random.Random) -> tuple[str, list[tuple[str, str]]]:
    brand = r.choice(["Chihiros", "Twinstar", "JBL", "Dennerle", "Aquael"])
    series = r.choice(["WRGB II", "SA", "LED Solar Natur", "Scaper's Light", "Leddy Slim"])
    length = r.choice([30, 45, 60, 75, 90, 120])
    return f"{brand} {series} {length} cm", [
        ("Length", f"{length} cm"),
        ("Power", f"{length // 3 + r.randint(0, 10)} W"),
        ("Colour temperature", f"{r.choice([6500, 7000, 8000])} K"),
        ("Luminous flux", f"{length * r.randint(35, 60)} lm"),
        ("Dimmable", r.choice(["Yes", "No"])),
    ]


def _heater(r: random.Random) -> tuple[str, list[tuple[str, str]]]:
    brand = r.choice(["Eheim", "Tetra", "JBL", "Aquael", "Hydor"])
    series = r.choice(["thermocontrol", "HT", "ProTemp", "Ultra Heater", "Theo"])
    watts = r.choice([25, 50, 75, 100, 150, 200, 300])
    return f"{brand} {series} {watts} W Heater", [
        ("Power", f"{watts} W"),
        ("Temperature range", f"{r.choice([18, 20])}{_DASH}{r.choice([32, 34])} °C"),
        ("Suitable for", f"{watts // 2}{_DASH}{watts} l"),
        ("Length", f"{r.randint(18, 38)} cm"),
    ]


def _plant(r: random.Random) -> tuple[str, list[tuple[str, str]]]:
    species = r.choice(
        [
            "Anubias barteri var. nana",
            "Microsorum pteropus",
            "Cryptocoryne wendtii",
            "Echinodorus bleheri",
            "Vallisneria spiralis",
            "Hygrophila polysperma",
            "Bucephalandra Kedagang",
            "Monte Carlo",
            "Java moss",
        ]
    )
    form = r.choice(["in pot", "in-vitro cup", "on driftwood", "on lava stone"])
    return f"{species} {form}", [
        ("Growth rate", r.choice(["Slow", "Medium", "Fast"])),
        ("Light demand", r.choice(["Low", "Medium", "High"])),
        ("Placement", r.choice(["Foreground", "Midground", "Background", "Epiphyte"])),
        ("Height", f"{r.randint(3, 10)}{_DASH}{r.randint(12, 40)} cm"),
    ]


def _food(r: random.Random) -> tuple[str, list[tuple[str, str]]]:
    brand = r.choice(["Tetra", "JBL", "Sera", "Hikari", "Dennerle", "Fluval"])
    kind = r.choice(["Flakes", "Granules", "Tablets", "Wafers", "Micro Pellets"])
    content = r.choice([100, 250, 500, 1000])
    return (
        f"{brand} {r.choice(['Pro', 'Nature', 'Vipan', 'Min', 'Bug Bites'])} {kind} {content} ml",
        [
            ("Content", f"{content} ml"),
            ("Weight", f"{content * r.randint(18, 45) // 100} g"),
            ("Crude protein", f"{r.randint(38, 52)} %"),
            ("Suitable for", r.choice(["Tropical fish", "Bottom feeders", "Shrimp", "Goldfish"])),
        ],
    )


def _decoration(r: random.Random) -> tuple[str, list[tuple[str, str]]]:
    material = r.choice(["Mopani wood", "Spider wood", "Dragon stone", "Seiryu stone", "Lava"])
    size = r.choice(["S", "M", "L", "XL"])
    return f"{material} {size}", [
        ("Material", material.split()[0]),
        ("Size", size),
        ("Weight", f"{r.randint(2, 40) / 10:.1f} kg"),
        ("Aquarium safe", "Yes"),
    ]


def _water_care(r: random.Random) -> tuple[str, list[tuple[str, str]]]:
    brand = r.choice(["Tetra", "JBL", "Sera", "Seachem", "Easy-Life"])
    product = r.choice(["AquaSafe", "Biotopol", "Prime", "Stability", "FFM", "Bio Start"])
    content = r.choice([50, 100, 250, 500, 1000])
    return f"{brand} {product} {content} ml", [
        ("Content", f"{content} ml"),
        ("Treats", f"up to {content * r.choice([2, 4, 10])} l"),
        ("Type", r.choice(["Water conditioner", "Bacteria starter", "Clarifier"])),
    ]


@dataclass(frozen=True, slots=True)
class _Kind:
    slug: str
    name: str
    blurb: str
    price_eur: tuple[int, int]
    make: _Maker


_KINDS: tuple[_Kind, ...] = (
    _Kind(
        "aquariums",
        "Aquariums",
        "Complete tanks and sets, from nano cubes to living-room centrepieces.",
        (39, 1499),
        _aquarium,
    ),
    _Kind(
        "filters",
        "Filters",
        "External, internal and hang-on filters for clear, healthy water.",
        (14, 349),
        _filter,
    ),
    _Kind(
        "lighting",
        "Lighting",
        "LED lights tuned for planted tanks and fish-only setups.",
        (19, 599),
        _lighting,
    ),
    _Kind(
        "heaters",
        "Heaters",
        "Reliable heaters that keep tropical tanks at a steady temperature.",
        (9, 89),
        _heater,
    ),
    _Kind(
        "plants",
        "Aquarium Plants",
        "Hardy and demanding plants, grown without pesticides.",
        (3, 29),
        _plant,
    ),
    _Kind(
        "food",
        "Fish Food",
        "Flakes, granules and tablets for every fish and shrimp.",
        (2, 39),
        _food,
    ),
    _Kind(
        "decoration",
        "Hardscape & Decoration",
        "Wood and stone for natural aquascapes.",
        (6, 119),
        _decoration,
    ),
    _Kind(
        "water-care",
        "Water Care",
        "Conditioners, bacteria and clarifiers.",
        (4, 59),
        _water_care,
    ),
)

_FILLER = (
    "Regular partial water changes keep nitrate low and the livestock healthy.",
    "Most tropical fish are comfortable between 24 and 27 °C.",
    "A new tank should run for several weeks before the first fish move in.",
    "Live plants compete with algae for nutrients and make the tank look settled.",
    "Rinse filter media in old tank water so the bacteria colony survives.",
    "Feed small portions that are eaten within two minutes.",
    "Test kits for ammonia, nitrite and nitrate are the best early warning system.",
    "Soft, slightly acidic water suits tetras, rasboras and most dwarf cichlids.",
    "Livebearers such as guppies and platies prefer harder water.",
    "Driftwood releases tannins that tint the water and lower the pH slightly.",
    "A lid keeps jumpers in and reduces evaporation.",
    "Shrimp are sensitive to copper, so check the label of every medication.",
    "Lighting for eight hours a day is enough for most planted tanks.",
    "A timer makes the day and night rhythm predictable for fish and plants.",
    "Quarantine new arrivals for two weeks before adding them to the main tank.",
    "Gravel vacuuming removes waste that would otherwise turn into nitrate.",
    "Heaters should be sized at roughly one watt per litre in a heated room.",
    "Carbon dioxide makes plants grow faster but needs careful monitoring.",
    "Snails are harmless clean-up crew in most community tanks.",
    "Our team keeps aquariums at home and tests what we sell.",
    "Orders placed before two o'clock leave our warehouse the same day.",
    "Live plants and animals are shipped in insulated boxes from Monday to Wednesday.",
    "Every product comes with a thirty-day return policy.",
    "Ask our staff for advice on stocking levels and compatibility.",
)

_AUTHORS = (
    "Anna K.",
    "Marek",
    "Zoë Laurent",
    "J. Okafor",
    "Lukas",
    "Priya S.",
    "Tomás",
    "Hannah W.",
    "Kenji",
    "Sofia R.",
    "Olu",
    "Ines",
)
_REVIEW_TITLES = (
    ("Disappointing", "Stopped working after a month, the replacement was fine."),
    ("Not bad", "Does the job, but the instructions could be clearer."),
    ("Good value", "Works as described and arrived well packed."),
    ("Very happy", "My fish seem more active since I switched to this."),
    ("Excellent", "Quiet, reliable and easy to set up. Would buy again."),
)


def _paragraphs(r: random.Random, count: int, sentences: int = 5) -> list[str]:
    return [" ".join(r.sample(_FILLER, sentences)) for _ in range(count)]


def _slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _price_text(r: random.Random, cents: int) -> str:
    # Shops format prices in many ways; the page also carries the machine-readable value
    # in the microdata ``content`` attribute, which is what the workflow reads.
    euros, rest = divmod(cents, 100)
    if r.random() < 0.5:
        return f"€ {euros:,}.{rest:02d}"
    return f"{euros:,}".replace(",", ".") + f",{rest:02d} €"


def _price_cents(r: random.Random, lo: int, hi: int) -> int:
    return r.randint(lo, hi) * 100 + r.choice([0, 49, 50, 90, 95, 99])


# --------------------------------------------------------------------------------------
# HTML


def _e(text: str) -> str:
    return html.escape(text, quote=True)


_CSS = """\
:root { --ink: #0b2a3a; --sea: #0e6e8c; --foam: #e8f6fa; --sand: #f6f1e7; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, sans-serif; color: var(--ink); }
header.site { background: var(--sea); color: #fff; padding: 0.75rem 1.5rem; }
header.site a { color: #fff; text-decoration: none; }
nav.main ul, footer ul { list-style: none; margin: 0; padding: 0; }
nav.main li { display: inline-block; margin-right: 1rem; }
main { max-width: 72rem; margin: 0 auto; padding: 1.5rem; }
.breadcrumb { font-size: 0.875rem; margin-bottom: 1rem; }
ul.products { display: grid; grid-template-columns: repeat(auto-fill, minmax(14rem, 1fr));
  gap: 1rem; list-style: none; padding: 0; }
.card { background: var(--foam); border-radius: 0.5rem; padding: 0.75rem; }
.badge { background: #ffb400; border-radius: 0.25rem; font-size: 0.75rem; padding: 0 0.25rem; }
.gallery { display: flex; gap: 0.5rem; }
.gallery img { width: 8rem; height: 8rem; object-fit: cover; }
.price { font-size: 1.5rem; font-weight: 700; }
.stock.in-stock { color: #16803c; } .stock.out-of-stock { color: #b42318; }
table.specs th { text-align: left; padding-right: 1rem; }
footer.site { background: var(--sand); padding: 1.5rem; margin-top: 3rem; font-size: 0.875rem; }
footer .columns { display: flex; gap: 3rem; flex-wrap: wrap; }
.pagination a { margin: 0 0.25rem; }
"""


def _header(categories: tuple[Category, ...]) -> str:
    menu = "".join(f'<li><a href="/c/{c.slug}/">{_e(c.name)}</a></li>' for c in categories[:4])
    return f"""<header class="site">
  <a class="logo" href="/" title="{SHOP_NAME} home">{SHOP_NAME}</a>
  <form class="search" action="/search" method="get" role="search">
    <label for="q">Search</label> <input id="q" name="q" type="search" placeholder="Search">
    <button type="submit">Go</button>
  </form>
  <nav class="main" aria-label="Main"><ul>
    <li><a href="/">Home</a></li>{menu}
    <li><a href="/about/">About us</a></li>
    <li><a href="/cart">Cart (0)</a></li>
  </ul></nav>
</header>"""


def _footer() -> str:
    return f"""<footer class="site">
  <div class="columns">
    <section><h2>Customer service</h2><ul>
      <li><a href="/shipping/">Shipping &amp; returns</a></li>
      <li><a href="/contact/">Contact</a></li>
      <li><a href="/about/">About {SHOP_NAME}</a></li>
      <li><a href="/discontinued/">Discontinued products</a></li>
    </ul></section>
    <section><h2>Follow us</h2><ul>
      <li><a href="https://social.example/aquashop" rel="noopener">Social</a></li>
      <li><a href="https://video.example/@aquashop" rel="noopener">Videos</a></li>
      <li><a href="mailto:hello@aquashop.example">hello@aquashop.example</a></li>
    </ul></section>
    <section><h2>Newsletter</h2>
      <p>Aquascaping tips, new arrivals and the odd discount, once a month. No spam, and you
      can unsubscribe at any time with one click.</p>
      <form action="/newsletter" method="post"><input name="email" type="email"
        placeholder="you@example.com"> <button type="submit">Subscribe</button></form>
    </section>
  </div>
  <p class="legal">Prices include VAT, plus shipping. Live animals are only shipped within
  the EU. &copy; 2026 {SHOP_NAME} — a demonstration site generated for Trawl; every
  product, price and review here is fictitious.</p>
</footer>"""


def _layout(
    title: str,
    description: str,
    body: str,
    categories: tuple[Category, ...],
    *,
    head_extra: str = "",
    scripts: str = "",
) -> bytes:
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)} | {SHOP_NAME}</title>
<meta name="description" content="{_e(description)}">
<link rel="stylesheet" href="/static/site.css">
<link rel="icon" href="/static/img/favicon.png">{head_extra}
</head>
<body>
{_header(categories)}
<main>
{body}
</main>
{_footer()}{scripts}
</body>
</html>
"""
    return page.encode("utf-8")


def _breadcrumb(*crumbs: tuple[str, str | None]) -> str:
    parts = ['<a href="/">Home</a>']
    for label, href in crumbs:
        parts.append(
            f'<a href="{_e(href)}">{_e(label)}</a>' if href else f"<span>{_e(label)}</span>"
        )
    return f'<nav class="breadcrumb" aria-label="Breadcrumb">{_SEP.join(parts)}</nav>'


def _home_page(site_cats: tuple[Category, ...], featured: list[Product], r: random.Random) -> bytes:
    nav = "".join(f'<li><a href="{_e(c.nav_href)}">{_e(c.name)}</a></li>' for c in site_cats)
    nav += '<li><a class="trade" href="/private/trade/">Trade customers</a></li>'
    cards = "".join(
        f'<li class="card"><a class="featured" href="{_e(p.path)}?utm_source=home&amp;'
        f'utm_campaign=featured"><img src="/static/img/p{p.id}-1.png" alt="">'
        f"<span>{_e(p.name)}</span></a> <span>{_e(p.price_text)}</span></li>"
        for p in featured
    )
    intro = "".join(f"<p>{_e(t)}</p>" for t in _paragraphs(r, 6))
    body = f"""<section class="hero">
  <h1>Everything for your aquarium</h1>
  <p>Tanks, technology, plants and food, chosen by people who keep fish themselves.</p>
</section>
<nav class="categories" aria-label="Categories"><h2>Shop by category</h2><ul>{nav}</ul></nav>
<section class="featured"><h2>Staff favourites</h2><ul class="grid">{cards}</ul></section>
<section class="about"><h2>Why {SHOP_NAME}?</h2>{intro}</section>"""
    return _layout(
        "Aquariums, filters, plants and fish food",
        f"{SHOP_NAME}: aquarium supplies shipped across Europe.",
        body,
        site_cats,
    )


def _card(link: ListingLink, thumb: str, blurb: str) -> str:
    badge = ""
    if link.bestseller:
        badge = '<span class="badge">Bestseller</span> '
    elif link.kind == "discontinued":
        badge = '<span class="badge">Discontinued</span> '
    return f"""<li class="card">
  <a class="product" href="{_e(link.href)}"><img src="{_e(thumb)}" alt="" loading="lazy">
  <span class="name">{_e(link.name)}</span></a>
  <p>{badge}{_e(blurb)}</p>
  <p><span class="card-price">{_e(link.price_text)}</span>
  <a class="details" href="{_e(link.path)}#specs">Details</a></p>
</li>"""


def _listing_page(
    cats: tuple[Category, ...],
    category: Category,
    page: ListingPage,
    *,
    total: int,
    blurbs: Mapping[str, str],
    thumbs: Mapping[str, str],
    r: random.Random,
) -> bytes:
    cards = "\n".join(_card(link, thumbs[link.path], blurbs[link.path]) for link in page.links)
    n_pages = len(category.pages)
    pager = []
    if page.number > 1:
        prev = category.path if page.number == 2 else f"?page={page.number - 1}"
        pager.append(f'<a rel="prev" href="{_e(prev)}">Previous</a>')
    for n in range(1, n_pages + 1):
        href = category.path if n == 1 else f"{category.path}?page={n}"
        if n == page.number:
            pager.append(f'<span aria-current="page">{n}</span>')
        else:
            pager.append(f'<a href="{_e(href)}">{n}</a>')
    if page.next_href is not None:
        pager.append(f'<a rel="next" href="{_e(page.next_href)}">Next</a>')
    head_extra = ""
    if page.next_href is not None:
        head_extra = f'\n<link rel="next" href="{category.path}?page={page.number + 1}">'
    intro = "".join(f"<p>{_e(t)}</p>" for t in _paragraphs(r, 1, 4))
    guide = "".join(f"<p>{_e(t)}</p>" for t in _paragraphs(r, 3))
    body = f"""{_breadcrumb((category.name, category.path if page.number > 1 else None))}
<h1>{_e(category.name)}</h1>
<p class="lead">{_e(category.blurb)}</p>
{intro}
<form class="sort" method="get"><label>Sort by <select name="sort">
  <option value="popular">Popularity</option><option value="price">Price</option>
  <option value="name">Name</option></select></label> <button>Apply</button></form>
<p class="count">Page {page.number} of {n_pages} · {total} items</p>
<ul class="products">
{cards}
</ul>
<nav class="pagination" aria-label="Pages">{" ".join(pager)}</nav>
<section class="guide"><h2>Buying guide</h2>{guide}</section>
<aside class="hint"><p>Looking for an older item? <a href="/discontinued/">See discontinued
products</a>; we list suitable replacements for each.</p></aside>"""
    title = category.name if page.number == 1 else f"{category.name} {_DASH} page {page.number}"
    return _layout(title, category.blurb, body, cats, head_extra=head_extra)


def _script_json(value: object) -> str:
    # Inside <script>, "</script>" or "<!--" in a string would end or corrupt the element.
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_PRODUCT_JS = """
<script>
(function () {
  // Rendered client-side on purpose: only a browser engine sees .rating and the reviews.
  var data = window.__PRODUCT__;
  var summary = document.querySelector(".product-summary");
  if (summary && data.rating !== null) {
    var badge = document.createElement("p");
    badge.className = "rating";
    badge.setAttribute("data-rating", String(data.rating));
    badge.textContent = data.rating.toFixed(1) + " / 5 from " + data.reviews.length + " reviews";
    summary.appendChild(badge);
  }
  var list = document.querySelector("ul.reviews");
  if (list) {
    list.textContent = "";
    data.reviews.forEach(function (review) {
      var item = document.createElement("li");
      item.className = "review";
      var head = document.createElement("strong");
      head.textContent = review.stars + "/5 " + review.title;
      var text = document.createElement("p");
      text.textContent = review.text + " (" + review.author + ", " + review.date + ")";
      item.appendChild(head);
      item.appendChild(text);
      list.appendChild(item);
    });
    if (!data.reviews.length) { list.textContent = "No reviews yet."; }
  }
})();
</script>"""


def _product_page(
    cats: tuple[Category, ...], p: Product, related: list[Product], r: random.Random
) -> bytes:
    gallery = "".join(
        f'<img src="{_e(src)}" alt="{_e(p.name)} view {i}" width="640" height="640">'
        for i, src in enumerate(p.image_srcs, 1)
    )
    if p.stock is True:
        stock = '<p class="stock in-stock" data-available="true">In stock</p>'
    elif p.stock is False:
        stock = '<p class="stock out-of-stock" data-available="false">Out of stock</p>'
    else:
        stock = f'<p class="availability">Available to order, ships in 2{_DASH}3 weeks</p>'
    specs = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in p.specs)
    description = "".join(f"<p>{_e(t)}</p>" for t in _paragraphs(r, r.randint(3, 5)))
    rel = "".join(
        f'<li><a class="related" href="{_e(q.path)}?utm_source=related">{_e(q.name)}</a>'
        f" <span>{_e(q.price_text)}</span></li>"
        for q in related
    )
    price = f"{p.price_cents // 100}.{p.price_cents % 100:02d}"
    body = f"""{_breadcrumb((p.category_name, f"/c/{p.category}/"), (p.name, None))}
<article class="product" itemscope itemtype="https://schema.org/Product" data-sku="{p.sku}">
  <h1 itemprop="name">{_e(p.name)}</h1>
  <div class="gallery">{gallery}</div>
  <div class="product-summary" itemprop="offers" itemscope itemtype="https://schema.org/Offer">
    <meta itemprop="priceCurrency" content="EUR">
    <span class="price" itemprop="price" content="{price}">{_e(p.price_text)}</span>
    {stock}
    <form class="buy" action="/cart" method="post"><input type="hidden" name="sku"
      value="{p.sku}"><input name="qty" type="number" value="1" min="1">
      <button type="submit">Add to cart</button></form>
    <p class="sku-line">Article number: {p.sku}</p>
  </div>
  <section class="description" id="details"><h2>Description</h2>
    <p class="lead">{_e(p.blurb)}</p>{description}</section>
  <section id="specs"><h2>Specifications</h2>
    <table class="specs"><caption>Technical data</caption><tbody>{specs}</tbody></table>
  </section>
  <section id="reviews"><h2>Reviews</h2><ul class="reviews"><li>Loading reviews…</li></ul>
  </section>
</article>
<aside class="related-products"><h2>Customers also bought</h2><ul>{rel}</ul></aside>"""
    ld = {
        "@context": "https://schema.org",
        "@type": "Product",
        "name": p.name,
        "sku": p.sku,
        "offers": {"@type": "Offer", "price": price, "priceCurrency": "EUR"},
    }
    head_extra = f'\n<script type="application/ld+json">{_script_json(ld)}</script>'
    data = {
        "id": p.id,
        "sku": p.sku,
        "reviews": [rv.as_json() for rv in p.reviews],
        "rating": p.rating,
    }
    scripts = f"\n<script>window.__PRODUCT__ = {_script_json(data)};</script>{_PRODUCT_JS}"
    return _layout(p.name, p.blurb, body, cats, head_extra=head_extra, scripts=scripts)


def _discontinued_page(
    cats: tuple[Category, ...], name: str, replacements: list[Product], r: random.Random
) -> bytes:
    items = "".join(f'<li><a href="{_e(q.path)}">{_e(q.name)}</a></li>' for q in replacements)
    text = "".join(f"<p>{_e(t)}</p>" for t in _paragraphs(r, 10))
    body = f"""{_breadcrumb(("Discontinued", "/discontinued/"), (name, None))}
<h1>{_e(name)} (discontinued)</h1>
<p class="notice">This product is no longer available. These are suitable replacements:</p>
<ul class="replacements">{items}</ul>{text}"""
    return _layout(f"{name} (discontinued)", "No longer available.", body, cats)


def _simple_page(
    cats: tuple[Category, ...], title: str, lead: str, r: random.Random, *, extra: str = ""
) -> bytes:
    text = "".join(f"<p>{_e(t)}</p>" for t in _paragraphs(r, 9))
    body = f"""{_breadcrumb((title, None))}
<h1>{_e(title)}</h1>
<p class="lead">{_e(lead)}</p>{extra}{text}"""
    return _layout(title, lead, body, cats)


def _not_found_page(cats: tuple[Category, ...]) -> bytes:
    suggestions = "".join(
        f'<li><a href="/c/{c.slug}/">{_e(c.name)}</a>: {_e(c.blurb)}</li>' for c in cats
    )
    tips = "".join(f"<p>{_e(' '.join(_FILLER[i : i + 4]))}</p>" for i in range(0, 24, 4))
    body = f"""<h1>Page not found</h1>
<p class="lead">Sorry, we could not find that page. The product may have been removed, or
the link you followed may be mistyped.</p>
<h2>Maybe you were looking for</h2><ul class="suggestions">{suggestions}</ul>
<h2>While you are here</h2>{tips}
<h2>Still lost?</h2>
<p>Use the search at the top of the page, or write to us at hello@aquashop.example with the
address you tried and what you were looking for. We read every message and usually answer
within one working day. If a product you bought from us has disappeared from the shop, our
staff can tell you which current model replaces it and whether your spare parts still fit.
</p>
<h2>Opening hours</h2>
<p>Our shop and phone line are open Monday to Friday from nine to six and on Saturdays from
ten to four. Live fish and plants can be collected in person during opening hours; please
bring a bucket or an insulated bag for the journey home.</p>"""
    return _layout("Page not found", "Page not found.", body, cats)


_ROBOTS = """\
# Aqua Shop: crawlers are welcome in the shop, not in the trade area or the cart.
User-agent: *
Disallow: /private/
Disallow: /cart
Disallow: /search

User-agent: EvilScraper
Disallow: /
"""


def _png(rgb: tuple[int, int, int]) -> bytes:
    """A valid 1x1 PNG, so image URLs in the pages resolve to real images."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + bytes(rgb))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------------------
# The build


def _product_href(r: random.Random, path: str) -> str:
    roll = r.random()
    if roll < 0.35:
        return path
    if roll < 0.55:
        return "../.." + path  # listings live at /c/<slug>/, two levels down
    if roll < 0.8:
        return path + "?utm_source=listing&utm_medium=grid"
    return path + "#reviews"


def _next_href(r: random.Random, category_path: str, number: int) -> str:
    return r.choice(
        [
            f"?page={number}",
            f"{category_path}?page={number}",
            f"?utm_source=pager&page={number}",  # unsorted, with tracking: canonical sorts/drops
        ]
    )


def _reviews(r: random.Random) -> tuple[Review, ...]:
    out = []
    for _ in range(r.choice([0, 0, 1, 2, 3, 4, 5, 6])):
        stars = r.choices([1, 2, 3, 4, 5], weights=[1, 1, 3, 6, 7])[0]
        title, text = _REVIEW_TITLES[stars - 1]
        date = f"2026-{r.randint(1, 10):02d}-{r.randint(1, 28):02d}"
        out.append(Review(r.choice(_AUTHORS), stars, title, text, date))
    return tuple(out)


def _make_products(r: random.Random, kinds: list[_Kind], lo: int, hi: int) -> list[Product]:
    # Ids leave gaps, which is where removed (404) and discontinued ids come from.
    products: list[Product] = []
    next_id = 100
    for kind in kinds:
        for _ in range(r.randint(lo, hi)):
            next_id += r.randint(1, 5)
            name, specs = kind.make(r)
            cents = _price_cents(r, *kind.price_eur)
            srcs = tuple(
                r.choice(["/static/img/", "../static/img/"]) + f"p{next_id}-{i}.png"
                for i in range(1, r.randint(1, 4) + 1)
            )
            products.append(
                Product(
                    id=next_id,
                    slug=_slugify(name),
                    name=name,
                    category=kind.slug,
                    category_name=kind.name,
                    price_cents=cents,
                    price_text=_price_text(r, cents),
                    sku=f"AQ-{r.randint(10000, 99999)}-{next_id}",
                    image_srcs=srcs,
                    specs=tuple(specs),
                    stock=r.choices([True, False, None], weights=[13, 5, 2])[0],
                    reviews=_reviews(r),
                    blurb=f"{name}: {r.choice(_FILLER)}",
                )
            )
    ids = [p.id for p in products]
    return [
        replace(p, related=tuple(r.sample([i for i in ids if i != p.id], min(4, len(ids) - 1))))
        for p in products
    ]


@dataclass(slots=True)
class _Listings:
    """The listing model under construction, plus what the cards and pages need."""

    categories: list[Category]
    blurbs: dict[str, str]  # path -> the card's blurb
    thumbs: dict[str, str]  # path -> the card's image
    discontinued: list[tuple[str, str, Product]]  # path, name, a replacement


def _paginate(
    r: random.Random, kind: _Kind, links: list[ListingLink], page_size: int
) -> tuple[ListingPage, ...]:
    chunks = [links[i : i + page_size] for i in range(0, len(links), page_size)]
    cat_path = f"/c/{kind.slug}/"
    bestseller = next((x for x in chunks[0] if x.kind == "product"), None)
    pages: list[ListingPage] = []
    for number, chunk in enumerate(chunks, 1):
        page_links = list(chunk)
        if number > 1 and bestseller is not None:
            # The same product again, differently tagged: dedup must keep page 1's copy.
            repeat = replace(
                bestseller, href=bestseller.path + "?utm_source=bestseller", bestseller=True
            )
            page_links.insert(0, repeat)
        nxt = _next_href(r, cat_path, number + 1) if number < len(chunks) else None
        key = cat_path if number == 1 else f"{cat_path}?page={number}"
        pages.append(ListingPage(kind.slug, number, key, tuple(page_links), nxt))
    return tuple(pages)


def _make_listings(
    r: random.Random, kinds: list[_Kind], products: list[Product], page_size: int
) -> _Listings:
    # Real products, discontinued items and removed (404) products, shuffled together.
    used = {p.id for p in products}
    spare_ids = [i for i in range(100, max(used)) if i not in used]
    r.shuffle(spare_ids)
    out = _Listings([], {}, {}, [])
    for index, kind in enumerate(kinds):
        own = [p for p in products if p.category == kind.slug]
        links: list[ListingLink] = []
        for p in own:
            links.append(
                ListingLink("product", p.path, _product_href(r, p.path), p.name, p.price_text)
            )
            out.blurbs[p.path] = p.blurb
            out.thumbs[p.path] = f"/static/img/p{p.id}-1.png"
        n_broken = r.randint(1 if index == 0 else 0, 2)  # at least one 404 on the site
        for kind_of, count in (("discontinued", r.randint(1, 2)), ("broken", n_broken)):
            for _ in range(count):
                pid = spare_ids.pop()
                name, _specs = kind.make(r)
                text = _price_text(r, _price_cents(r, *kind.price_eur))
                if kind_of == "discontinued":
                    path = f"/discontinued/{pid}-{_slugify(name)}"
                    href = r.choice([path, path + "?utm_source=listing"])
                    out.discontinued.append((path, name, own[0]))
                    links.append(ListingLink("discontinued", path, href, name, text))
                else:
                    path = f"/p/{pid}-{_slugify(name)}"
                    links.append(ListingLink("broken", path, _product_href(r, path), name, text))
                out.blurbs[path] = f"{name}: {r.choice(_FILLER)}"
                out.thumbs[path] = "/static/img/placeholder.png"
        r.shuffle(links)
        cat_path = f"/c/{kind.slug}/"
        nav_href = r.choice([cat_path, f"c/{kind.slug}/?utm_source=home", f"{cat_path}#top"])
        pages = _paginate(r, kind, links, page_size)
        out.categories.append(Category(kind.slug, kind.name, kind.blurb, nav_href, pages))
    return out


def _render(r: random.Random, products: list[Product], listings: _Listings) -> dict[str, Resource]:
    cats = tuple(listings.categories)
    by_id = {p.id: p for p in products}
    out: dict[str, Resource] = {}

    def put(path: str, body: bytes, content_type: str = HTML_TYPE) -> None:
        out[path] = Resource(200, content_type, body)

    put("/", _home_page(cats, r.sample(products, min(4, len(products))), r))
    for c in cats:
        total = sum(1 for page in c.pages for link in page.links if not link.bestseller)
        for page in c.pages:
            body = _listing_page(
                cats, c, page, total=total, blurbs=listings.blurbs, thumbs=listings.thumbs, r=r
            )
            put(page.path, body)
    for p in products:
        put(p.path, _product_page(cats, p, [by_id[i] for i in p.related], r))
    for path, name, replacement in listings.discontinued:
        put(path, _discontinued_page(cats, name, [replacement], r))
    items = "".join(
        f'<li><a href="{_e(path)}">{_e(name)}</a></li>' for path, name, _ in listings.discontinued
    )
    put(
        "/discontinued/",
        _simple_page(
            cats,
            "Discontinued products",
            "Products we no longer sell, with their replacements.",
            r,
            extra=f'<ul class="discontinued">{items}</ul>',
        ),
    )
    trade = "".join(
        f"<tr><td>{_e(p.sku)}</td><td>{_e(p.name)}</td>"
        f"<td>{p.price_cents * 0.7 / 100:.2f}</td></tr>"
        for p in products[:12]
    )
    put("/private/", _simple_page(cats, "Trade area", "Sign in to see trade prices.", r))
    put(
        "/private/trade/",
        _simple_page(
            cats,
            "Trade price list",
            "Confidential: for registered trade customers only.",
            r,
            extra=f'<table class="trade"><tbody>{trade}</tbody></table>',
        ),
    )
    put("/about/", _simple_page(cats, "About us", "A small team of fishkeepers since 2009.", r))
    put("/shipping/", _simple_page(cats, "Shipping & returns", "Free shipping over € 60.", r))
    put("/contact/", _simple_page(cats, "Contact", "Write to hello@aquashop.example.", r))
    put("/robots.txt", _ROBOTS.encode(), "text/plain; charset=utf-8")
    put("/static/site.css", _CSS.encode(), "text/css; charset=utf-8")
    image = _png((14, 110, 140))
    for path in ["/static/img/favicon.png", "/static/img/placeholder.png"]:
        put(path, image, "image/png")
    for p in products:
        for path in p.image_paths:
            put(path, image, "image/png")
    return out


def build_site(
    seed: int = 7,
    n_categories: int = 5,
    products_per_category: tuple[int, int] = (12, 30),
    page_size: int = 10,
) -> Site:
    """The whole shop in memory; the same arguments always give the same bytes."""
    if not 1 <= n_categories <= len(_KINDS):
        raise ValueError(f"n_categories must be between 1 and {len(_KINDS)}")
    lo, hi = products_per_category
    if not 1 <= lo <= hi:
        raise ValueError("products_per_category must be (lo, hi) with 1 <= lo <= hi")
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    r = random.Random(seed)
    kinds = r.sample(_KINDS, n_categories)
    products = _make_products(r, kinds, lo, hi)
    listings = _make_listings(r, kinds, products, page_size)
    # Filler text is drawn in page order, after the model is complete.
    pages = _render(r, products, listings)
    cats = tuple(listings.categories)
    return Site(
        seed=seed,
        page_size=page_size,
        categories=cats,
        products=tuple(products),
        private_links=("/private/trade/",),
        pages=pages,
        not_found=Resource(404, HTML_TYPE, _not_found_page(cats)),
    )


# --------------------------------------------------------------------------------------
# The expected answer


def canonical_url(base_url: str, path: str) -> str:
    """The crawler's key for ``path`` on the server at ``base_url``."""
    return canonicalize(base_url.rstrip("/") + path, IGNORE_QUERY_PARAMS)


def _first_seen(site: Site, kind: LinkKind) -> dict[str, int]:
    # Listing pages are discovered in order (page N only through page N-1's next link), so a
    # link's first sighting, which fixes its depth, is its earliest page.
    depth: dict[str, int] = {}
    for page in site.listing_pages():
        for link in page.links:
            if link.kind == kind and link.path not in depth:
                depth[link.path] = page.depth + 1
    return depth


def expected(site: Site, base_url: str, engine: Engine = "browser") -> list[dict[str, Any]]:
    """The records of one crawl of ``site``, sorted by URL, without the run-specific fields.

    ``engine="browser"`` is aqua.yaml; ``"http"`` is aqua-http.yaml, which has no script
    node (no ``reviews``) and whose pages never run JavaScript (``rating`` is null).
    ``execution_id``, ``fetched_at`` and ``parent_url`` (of several pages linking to a
    product, whichever was crawled first) differ per run and are left out.
    """
    if engine not in ("browser", "http"):
        raise ValueError(f"unknown engine {engine!r}")
    depths = _first_seen(site, "product")
    by_path = {p.path: p for p in site.products}
    base = base_url.rstrip("/")
    records = []
    for path, depth in depths.items():
        p = by_path[path]
        data: dict[str, Any] = {
            "name": p.name,
            "sku": p.sku,
            "price": p.price,
            "category": p.category_name,
            "images": [canonicalize(base + img) for img in p.image_paths],
            "specs": dict(p.specs),
            "in_stock": p.stock is True,
            "rating": p.rating if engine == "browser" else None,
        }
        if engine == "browser":
            data["reviews"] = [rv.as_json() for rv in p.reviews]
        url = canonical_url(base_url, path)
        records.append(
            {
                "workflow": WORKFLOW_NAME,
                "phase": PRODUCT_PHASE,
                "url": url,
                "final_url": url,
                "marker": PRODUCT_MARKER,
                "depth": depth,
                "status": 200,
                "content_type": "text/html",
                "etag": None,
                "last_modified": None,
                "change": "new",
                "lastmod": None,
                "data": data,
            }
        )
    return sorted(records, key=lambda rec: rec["url"])


def expected_failures(site: Site, base_url: str) -> list[dict[str, Any]]:
    """The pages that fail for good: the removed products linked from listings (404)."""
    return sorted(
        (
            {
                "url": canonical_url(base_url, path),
                "phase": PRODUCT_PHASE,
                "marker": PRODUCT_MARKER,
                "depth": depth,
                "status": 404,
                "error_class": "http_404",
            }
            for path, depth in _first_seen(site, "broken").items()
        ),
        key=lambda f: f["url"],
    )


def expected_robots_blocked(site: Site, base_url: str) -> list[dict[str, Any]]:
    """Links the crawl admits but robots.txt forbids fetching (the trade area)."""
    return [
        {"url": canonical_url(base_url, path), "phase": "listing", "marker": "category", "depth": 1}
        for path in site.private_links
    ]


def expected_counts(site: Site) -> dict[str, Any]:
    """The counts a crawl's summary must show; the same for both engines.

    ``pages``, ``records``, ``by_phase``, ``by_marker`` and ``failures_by_class`` have the
    shape of the export's ``summary.json``, where a robots-blocked task ends as
    ``filtered`` and the start page's marker is ``""``. The rest explain those numbers.
    """
    listing = site.listing_pages()
    n_listing = len(listing)
    n_categories = len(site.categories)
    n_products = len(_first_seen(site, "product"))
    n_broken = len(_first_seen(site, "broken"))
    n_blocked = len(site.private_links)
    n_published = 1 + n_listing + n_blocked + n_products + n_broken
    return {
        "workflow": WORKFLOW_NAME,
        "pages": {
            "published": n_published,
            "finished": n_published,
            "succeeded": 1 + n_listing + n_products,
            "failed": n_broken,
            "filtered": n_blocked,
        },
        "records": n_products,
        "by_phase": {
            "categories": {"succeeded": 1},
            "listing": {"succeeded": n_listing, "filtered": n_blocked},
            PRODUCT_PHASE: {"succeeded": n_products, "failed": n_broken},
        },
        "by_marker": {
            "": {"succeeded": 1},
            "category": {"succeeded": n_categories, "filtered": n_blocked},
            "page": {"succeeded": n_listing - n_categories},
            PRODUCT_MARKER: {"succeeded": n_products, "failed": n_broken},
        },
        "failures_by_class": {"http_404": n_broken},
        # Pages fetched (an HTTP answer, 404s included) per phase; blocked ones never are.
        "fetched": {"categories": 1, "listing": n_listing, PRODUCT_PHASE: n_products + n_broken},
        "robots_blocked": n_blocked,
        # Links the listing phase's filter node drops (the /discontinued/ items): they never
        # become tasks, so the summary does not count them.
        "filter_dropped_links": sum(
            1 for page in listing for link in page.links if link.kind == "discontinued"
        ),
        # Product links seen again on later listing pages (the bestseller repeats).
        "duplicate_product_links": sum(
            1 for page in listing for link in page.links if link.bestseller
        ),
        "max_depth": site.max_depth,
    }


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.aqua.generate",
        description="Write the expected answer of crawling the Aqua shop.",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL)
    parser.add_argument("--engine", choices=["browser", "http"], default="browser")
    parser.add_argument(
        "--out", type=Path, help="write expected.jsonl, failures.jsonl, counts.json"
    )
    args = parser.parse_args(argv)
    site = build_site(args.seed)
    counts = expected_counts(site)
    if args.out is None:
        json.dump(counts, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    lines = (json.dumps(r, ensure_ascii=False) for r in expected(site, args.base_url, args.engine))
    (args.out / "expected.jsonl").write_text("".join(line + "\n" for line in lines), "utf-8")
    failures = expected_failures(site, args.base_url)
    text = "".join(json.dumps(f) + "\n" for f in failures)
    (args.out / "failures.jsonl").write_text(text, "utf-8")
    (args.out / "counts.json").write_text(json.dumps(counts, indent=2) + "\n", "utf-8")
    print(f"wrote the expected answer for seed {args.seed} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
