"""The http engine against the local test site: every kind of page a crawl meets, and the
error class (and retry delay) each failure is reported under."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from backends.errors import PermanentError, RetryableError, TrawlError
from backends.fetcher import FetchRequest
from nodes.page import Page
from tests.site import CAFE_1252, CAFE_LATIN1, SiteServer
from worker.fetchers import classify
from worker.fetchers.decode import codec_for, decode_html, sniff_meta_charset
from worker.fetchers.http import HttpFetcher


async def fetch(fetcher: HttpFetcher, url: str, **kw: object) -> Page:
    async with fetcher.open(FetchRequest(url, **kw)) as page:  # type: ignore[arg-type]
        return page


async def failure(fetcher: HttpFetcher, url: str, **kw: object) -> TrawlError:
    with pytest.raises(TrawlError) as info:
        await fetch(fetcher, url, **kw)
    return info.value


# --- pages that work -------------------------------------------------------------------------


async def test_static_page(http_fetcher: HttpFetcher, site: SiteServer) -> None:
    page = await fetch(http_fetcher, site.url("/product/3"), user_agent="trawl-test/1 ua-static")
    assert page.url == site.url("/product/3")
    assert page.requested_url == site.url("/product/3")
    assert page.status == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert all(key == key.lower() for key in page.headers)
    assert page.elapsed_s > 0
    assert page.evaluate is None
    assert page.css("h1")[0].text() == "Aqua Filter 3"
    assert page.css(".price")[0].text() == "€13.50"
    hrefs = [a.attr("href") for a in page.css("a[href]")]
    assert "/product/4" in hrefs and "product/6" in hrefs
    agents = [e.user_agent for e in site.log.entries() if e.path == "/product/3"]
    assert "trawl-test/1 ua-static" in agents


async def test_extra_headers_and_host_header(http_fetcher: HttpFetcher, site: SiteServer) -> None:
    headers = {"X-Trace": "1", "user-agent": "override/1"}
    await fetch(http_fetcher, site.url("/product/11?t=host"), headers=headers)
    [entry] = [e for e in site.log.entries() if e.path == "/product/11?t=host"]
    assert entry.host == f"127.0.0.1:{site.port}"
    assert entry.user_agent == "override/1"  # the request's headers win, in any case


async def test_redirect_chain_gives_final_url(http_fetcher: HttpFetcher, site: SiteServer) -> None:
    page = await fetch(http_fetcher, site.url("/redirect/chain"))
    assert page.url == site.url("/product/1")
    assert page.requested_url == site.url("/redirect/chain")
    assert page.status == 200
    assert page.css("h1")[0].text() == "Aqua Filter 1"


async def test_ten_redirects_are_followed(http_fetcher: HttpFetcher, site: SiteServer) -> None:
    page = await fetch(http_fetcher, site.url("/redirect/n/10"))
    assert page.url == site.url("/product/1")


@pytest.mark.parametrize("path", ["/redirect/loop/a", "/redirect/n/11"])
async def test_redirect_loop_is_permanent(
    http_fetcher: HttpFetcher, site: SiteServer, path: str
) -> None:
    error = await failure(http_fetcher, site.url(path))
    assert isinstance(error, PermanentError)
    assert error.error_class == "redirect_loop"


async def test_gzip_is_decompressed(http_fetcher: HttpFetcher, site: SiteServer) -> None:
    page = await fetch(http_fetcher, site.url("/gzip"))
    assert page.headers["content-encoding"] == "gzip"
    assert page.css("h1")[0].text() == "Aqua Filter 7"


async def test_malformed_html_still_parses(http_fetcher: HttpFetcher, site: SiteServer) -> None:
    page = await fetch(http_fetcher, site.url("/malformed"))
    assert page.status == 200
    assert "Malformed" in page.css("h1")[0].text()
    hrefs = [a.attr("href") for a in page.css("a[href]")]
    assert hrefs[:2] == ["/product/1", "/product/2"]
    assert "\ufffd" in page.html  # the stray 0xff 0xfe bytes, replaced rather than fatal


async def test_untyped_html_is_accepted(http_fetcher: HttpFetcher, site: SiteServer) -> None:
    page = await fetch(http_fetcher, site.url("/binary/untyped.html"))
    assert "content-type" not in page.headers
    assert page.css("h1")[0].text() == "Aqua Filter 1"


async def test_body_under_the_cap(http_fetcher: HttpFetcher, site: SiteServer) -> None:
    page = await fetch(http_fetcher, site.url("/huge?bytes=300000"), max_body_bytes=300_000)
    assert len(page.html) == 300_000


async def test_many_concurrent_fetches(http_fetcher: HttpFetcher, site: SiteServer) -> None:
    pages = await asyncio.gather(
        *(fetch(http_fetcher, site.url(f"/product/{n}")) for n in range(100))
    )
    assert [p.css("h1")[0].text() for p in pages] == [f"Aqua Filter {n}" for n in range(100)]


# --- charsets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/charset/header-1252", CAFE_1252),  # declared only in Content-Type
        ("/charset/header-latin1", CAFE_LATIN1),
        ("/charset/meta", CAFE_1252),  # declared only in <meta charset>
        ("/charset/http-equiv", CAFE_LATIN1),  # only in <meta http-equiv>
        ("/charset/none", CAFE_1252),  # undeclared windows-1252: detection
        ("/charset/utf8-none", CAFE_1252),  # undeclared UTF-8
        ("/charset/conflict", CAFE_1252),  # header (utf-8) beats <meta> (latin-1)
    ],
)
async def test_charsets(http_fetcher: HttpFetcher, site: SiteServer, path: str, text: str) -> None:
    page = await fetch(http_fetcher, site.url(path))
    assert page.css("h1")[0].text() == text
    assert "café" in page.html
    assert "\ufffd" not in page.html


def test_decode_rules() -> None:
    assert decode_html("café".encode("cp1252"), "text/html; charset=ISO-8859-1") == "café"
    # WHATWG: latin-1 labels mean windows-1252, so 0x93/0x94 are curly quotes, not C1 controls.
    assert decode_html(b"\x93x\x94", "text/html; charset=latin1") == "\u201cx\u201d"
    # ...and its five undefined bytes are C1 controls, as browsers read them.
    assert decode_html(b"\x81\x9d", "text/html; charset=windows-1252") == "\x81\x9d"
    assert decode_html("\ufeffcafé".encode(), "text/html; charset=latin1") == "café"  # BOM wins
    assert decode_html(b"caf\xc3\xa9 \xff", "text/html; charset=utf-8") == "café \ufffd"
    assert decode_html(b"x", 'text/html; charset="bogus-charset"') == "x"
    assert sniff_meta_charset(b'<head><meta content="text/html; charset=koi8-r" ') == "koi8-r"
    assert sniff_meta_charset(b"<head><META CHARSET='Shift_JIS'>") == "Shift_JIS"
    assert codec_for("UTF-16") == "utf-8"  # a <meta> cannot truthfully declare UTF-16
    assert codec_for("nonsense") is None


# --- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [404, 403, 410, 400])
async def test_4xx_is_permanent(http_fetcher: HttpFetcher, site: SiteServer, code: int) -> None:
    error = await failure(http_fetcher, site.url(f"/status/{code}"))
    assert isinstance(error, PermanentError)
    assert error.error_class == f"http_{code}"


async def test_unrouted_page_is_404(http_fetcher: HttpFetcher, site: SiteServer) -> None:
    error = await failure(http_fetcher, site.url("/no/such/page"))
    assert isinstance(error, PermanentError)
    assert error.error_class == "http_404"


async def test_500_is_retryable(http_fetcher: HttpFetcher, site: SiteServer) -> None:
    error = await failure(http_fetcher, site.url("/status/500"))
    assert isinstance(error, RetryableError)
    assert error.error_class == "http_5xx"
    assert error.delay_s is None


async def test_503_retry_after_seconds(http_fetcher: HttpFetcher, site: SiteServer) -> None:
    error = await failure(http_fetcher, site.url("/status/503?retry_after=3"))
    assert isinstance(error, RetryableError)
    assert (error.error_class, error.delay_s) == ("http_5xx", 3.0)


async def test_429_retry_after_seconds(http_fetcher: HttpFetcher, site: SiteServer) -> None:
    error = await failure(http_fetcher, site.url("/status/429?retry_after=7"))
    assert isinstance(error, RetryableError)
    assert (error.error_class, error.delay_s) == ("http_429", 7.0)


async def test_429_retry_after_date(http_fetcher: HttpFetcher, site: SiteServer) -> None:
    error = await failure(http_fetcher, site.url("/status/429?retry_after=date:120"))
    assert isinstance(error, RetryableError)
    assert error.error_class == "http_429"
    # An HTTP date has one-second resolution; the request took a moment.
    assert error.delay_s is not None and 110 <= error.delay_s <= 120


def test_retry_after_parsing() -> None:
    now = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    assert classify.parse_retry_after("120", now) == 120.0
    assert classify.parse_retry_after("Tue, 14 Nov 2023 22:15:20 GMT", now) == 120.0
    assert classify.parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now) == 0.0  # past
    assert classify.parse_retry_after("-5", now) == 0.0
    assert classify.parse_retry_after("999999", now) == classify.MAX_RETRY_AFTER_S
    assert classify.parse_retry_after("soon", now) is None
    assert classify.parse_retry_after("nan", now) is None
    assert classify.parse_retry_after(None, now) is None


@pytest.mark.parametrize("path", ["/slow?delay_s=10", "/slow-body?delay_s=10"])
async def test_timeout_is_retryable(http_fetcher: HttpFetcher, site: SiteServer, path: str) -> None:
    started = time.monotonic()
    error = await failure(http_fetcher, site.url(path), timeout_s=0.5)
    assert isinstance(error, RetryableError)
    assert error.error_class == "timeout"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("path", ["/huge?bytes=20000000", "/huge?bytes=20000000&length=1"])
async def test_too_large_is_permanent(
    http_fetcher: HttpFetcher, site: SiteServer, path: str
) -> None:
    error = await failure(http_fetcher, site.url(path), max_body_bytes=1024 * 1024)
    assert isinstance(error, PermanentError)
    assert error.error_class == "too_large"


@pytest.mark.parametrize(
    "path",
    ["/binary/image.png", "/binary/doc.pdf", "/binary/data.json", "/binary/untyped.png"],
)
async def test_non_html_is_permanent(
    http_fetcher: HttpFetcher, site: SiteServer, path: str
) -> None:
    error = await failure(http_fetcher, site.url(path))
    assert isinstance(error, PermanentError)
    assert error.error_class == "not_html"


@pytest.mark.parametrize("path", ["/drop", "/drop-early"])
async def test_dropped_connection_is_retryable(
    http_fetcher: HttpFetcher, site: SiteServer, path: str
) -> None:
    error = await failure(http_fetcher, site.url(path))
    assert isinstance(error, RetryableError)
    assert error.error_class == "connection"


async def test_refused_connection_is_retryable(http_fetcher: HttpFetcher) -> None:
    with socket.socket() as sock:  # a port nobody listens on once this socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = await failure(http_fetcher, f"http://127.0.0.1:{port}/")
    assert isinstance(error, RetryableError)
    assert error.error_class == "connection"


async def test_invalid_url_is_permanent(http_fetcher: HttpFetcher) -> None:
    error = await failure(http_fetcher, "http://exa mple.com:99999999/")
    assert isinstance(error, PermanentError)
    assert error.error_class == "invalid_url"


async def test_fetch_before_start_is_a_bug(site: SiteServer) -> None:
    with pytest.raises(RuntimeError, match="start"):
        await fetch(HttpFetcher(), site.url("/"))


async def test_close_is_idempotent() -> None:
    fetcher = HttpFetcher()
    await fetcher.start()
    await fetcher.close()
    await fetcher.close()
