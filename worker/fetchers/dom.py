"""Reading a rendered page as HTML: what the browser engine hands the nodes.

Playwright's ``page.content()`` serializes the DOM in an isolated JavaScript world of its
own, which it creates, and fills with its helper scripts, in every new document: measured
on the JS benchmark site (bench/browser.py), ~25 ms of CPU per page across Chromium, the
driver and Python, more than the rest of reading the page. ``read_html`` instead asks
Chromium directly (``Runtime.evaluate`` on the tab's DevTools session) to serialize the
document in the page's own world, and checks the size there, so a page over the cap is
refused before its bytes cross to the worker.

The page's own world is the page's: its scripts may have replaced the serializer or the
``outerHTML`` getter, and a page can only lie about itself that way (it could render a
different DOM just as well). What they cannot do is make the worker take something other
than a string for HTML, or make it wait: an answer that is not a string or a size, or a
script that throws, falls back to ``page.content()`` (the isolated world, out of the page's
reach), and the fetch's timeout bounds both.
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import CDPSession
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page as PlaywrightPage

from worker.fetchers import classify

# The document as page.content() gives it: the doctype, then the root element's markup.
# Over the cap, only the length comes back.
_SERIALIZE = """(() => {{
  const doc = document, type = doc.doctype, root = doc.documentElement;
  let html = type ? new XMLSerializer().serializeToString(type) : "";
  if (root) html += root.outerHTML;
  return html.length > {cap} ? html.length : html;
}})()"""


async def read_html(
    session: CDPSession | None, page: PlaywrightPage, url: str, max_chars: int
) -> str:
    """The rendered DOM of ``page`` (loaded from ``url``) as HTML. PermanentError
    ``too_large`` when it is longer than ``max_chars`` characters (a close enough stand-in
    for the byte cap). Errors of a page that crashed or closed are Playwright's, from the
    fallback."""
    if session is not None:
        answer = await _evaluate(session, _SERIALIZE.format(cap=int(max_chars)))
        if isinstance(answer, str):
            return answer
        if isinstance(answer, int) and not isinstance(answer, bool) and answer > max_chars:
            raise classify.too_large(url, max_chars)
    html = await page.content()
    if len(html) > max_chars:
        raise classify.too_large(url, max_chars)
    return html


async def _evaluate(session: CDPSession, expression: str) -> Any:
    """The value of ``expression`` in the page's main world; None when it threw, or the
    session could not ask (the tab closed, the document was replaced meanwhile)."""
    try:
        reply = await session.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}
        )
    except PlaywrightError:
        return None
    if "exceptionDetails" in reply:
        return None
    return reply.get("result", {}).get("value")
