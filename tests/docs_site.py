"""A small documentation site as Sphinx writes one, for the text-field tests.

Sphinx (and DocBook) pages are where collapsed text reads wrong: headings end in a
permalink ``<a class="headerlink">¶</a>``, code blocks are ``<pre>`` full of highlighting
``<span>``s whose lines matter, and addresses are lines joined by ``<br>``. The site is a
table of contents linking to three pages; ``/usage.html`` has no version line (a required
field missing), ``/faq.html`` no code block (a multiple field with no match).

``DocsSite`` serves it on 127.0.0.1, on a free port, from a thread with its own event loop
(a ``ThreadedApp``), so one server serves a test whatever event loop that test runs in.
"""

from __future__ import annotations

from aiohttp import web

from tests.threaded_app import ThreadedApp

ADDRESS = "Trawl Docs Team<br>\n      1 Crawl Street<br>\n      Harbour City"
# What a reader sees of the <address>: its lines, each trimmed.
ADDRESS_TEXT = "Trawl Docs Team\n1 Crawl Street\nHarbour City"


def _page(title: str, body: str, version: str | None) -> str:
    version_line = f'<p class="version">Version <span>{version}</span></p>' if version else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title} &#8212; Trawl docs</title></head>
<body>
  <div class="document"><div class="body" role="main">
    <section id="{title.lower()}">
      <h1>{title}<a class="headerlink" href="#{title.lower()}"
        title="Link to this heading">¶</a></h1>
      {version_line}
      {body}
    </section>
  </div></div>
  <footer><address>
      {ADDRESS}
  </address></footer>
</body></html>
"""


# The <pre> of /install.html and the text a reader sees in it.
INSTALL_PRE = (
    '<pre><span></span><span class="gp">$ </span>python -m venv .venv\n'
    '<span class="gp">$ </span>.venv/bin/pip install trawl\n'
    "\n"
    '<span class="c1"># check it runs</span>\n'
    '<span class="gp">$ </span>trawl --version\n'
    "    trawl 1.0\n"
    "</pre>"
)
INSTALL_CODE = (
    "$ python -m venv .venv\n"
    "$ .venv/bin/pip install trawl\n"
    "\n"
    "# check it runs\n"
    "$ trawl --version\n"
    "    trawl 1.0"
)
USAGE_PRE = '<pre>\n\n<span class="n">trawl</span> run shop.yaml\n  --out out\n\n</pre>'
USAGE_CODE = "trawl run shop.yaml\n  --out out"

PAGES: dict[str, str] = {
    "/": """<!DOCTYPE html><html><head><title>Trawl docs</title></head><body>
      <nav class="toc"><ul>
        <li><a href="install.html">Installation</a></li>
        <li><a href="usage.html">Usage</a></li>
        <li><a href="faq.html">FAQ</a></li>
      </ul></nav></body></html>""",
    "/install.html": _page(
        "Installation",
        '<p>Install it\n     with pip:</p>\n      <div class="highlight-console notranslate">'
        f'<div class="highlight">{INSTALL_PRE}</div></div>',
        "1.0",
    ),
    "/usage.html": _page(
        "Usage",
        '<p>Run a workflow:</p><div class="highlight-console notranslate">'
        f'<div class="highlight">{USAGE_PRE}</div></div>',
        None,
    ),
    "/faq.html": _page("FAQ", "<p>Ask on the list.</p>", "1.0"),
}


def build_app() -> web.Application:
    """``PAGES`` by path; any other path is a 404."""

    async def page(request: web.Request) -> web.Response:
        body = PAGES.get(request.path)
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(text=body, content_type="text/html", charset="utf-8")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    return app


class DocsSite(ThreadedApp):
    """The site on 127.0.0.1:<free port>, served from a background thread's event loop."""

    def __init__(self) -> None:
        super().__init__(build_app, name="docs-site", label="the docs site")
