"""The http engine: plain HTTP with aiohttp, no JavaScript, thousands of pages a second.

One ClientSession (one connection pool, one DNS cache) serves every fetch of the process;
the hot path does one request, one streamed read with a size cap, one decode, and builds
the Page. Everything a response can mean is mapped to Retryable/PermanentError by
``classify`` so both engines report failures under the same classes.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

import aiohttp
from multidict import CIMultiDictProxy

from backends.errors import PermanentError, RetryableError
from backends.fetcher import Fetcher, FetchRequest
from nodes.page import Page
from worker.fetchers import classify
from worker.fetchers.decode import decode_html

DEFAULT_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"


class HttpFetcher(Fetcher):
    """Fetcher over one shared aiohttp session.

    ``limit`` caps open connections of the whole process (politeness caps them per host
    upstream); ``ttl_dns_cache_s`` keeps resolved names that long. Cookies are not kept:
    tasks of different executions share the session, and a crawl should not carry state
    from one page to the next.
    """

    def __init__(
        self,
        *,
        limit: int = 256,
        limit_per_host: int = 0,
        ttl_dns_cache_s: int = 300,
        max_redirects: int = 10,
        max_header_bytes: int = 16384,
    ) -> None:
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._ttl_dns_cache_s = ttl_dns_cache_s
        self._max_redirects = max_redirects
        # aiohttp raises on reaching its limit, so it follows one fewer than it is given.
        self._aiohttp_redirects = max_redirects + 1
        self._max_header_bytes = max_header_bytes
        self._session: aiohttp.ClientSession | None = None
        # ClientTimeout objects are immutable; fetches mostly share a handful of values.
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    async def start(self) -> None:
        """Open the session; must run inside the event loop that will fetch."""
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            limit=self._limit,
            limit_per_host=self._limit_per_host,
            ttl_dns_cache=self._ttl_dns_cache_s,
            use_dns_cache=True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"Accept": DEFAULT_ACCEPT},
            raise_for_status=False,
            auto_decompress=True,
            trust_env=False,
            max_line_size=self._max_header_bytes,
            max_field_size=self._max_header_bytes,
        )

    async def close(self) -> None:
        """Close the session and its connections."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def open(self, request: FetchRequest) -> _OpenPage:
        """The page is read completely on entry; nothing stays open inside the block."""
        return _OpenPage(self, request)

    async def fetch(self, request: FetchRequest) -> Page:
        """Fetch and decode one page (what ``open`` does on entry)."""
        session = self._session
        if session is None:
            raise RuntimeError("HttpFetcher.start() was not called")
        url = request.url
        timeout = self._timeouts.get(request.timeout_s)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=request.timeout_s)
            if len(self._timeouts) < 64:
                self._timeouts[request.timeout_s] = timeout
        headers = {"User-Agent": request.user_agent}
        if request.headers:
            # The request's own headers win, a User-Agent among them (in any letter case).
            if any(name.lower() == "user-agent" for name in request.headers):
                del headers["User-Agent"]
            headers.update(request.headers)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with session.get(
                url, headers=headers, timeout=timeout, max_redirects=self._aiohttp_redirects
            ) as resp:
                status = resp.status
                resp_headers = resp.headers
                error = classify.status_error(status, url, resp_headers.get("Retry-After"))
                if error is not None:
                    raise error
                content_type = resp_headers.get("Content-Type")
                error = classify.content_type_error(content_type, url)
                if error is not None:
                    raise error
                body = await _read_capped(resp, request.max_body_bytes, url)
                final_url = str(resp.url)
        except aiohttp.TooManyRedirects as exc:
            raise classify.redirect_loop(url, f"more than {self._max_redirects}") from exc
        except aiohttp.RedirectClientError as exc:  # Location is not an http(s) URL
            raise PermanentError(
                f"{url} redirects to an unusable URL: {exc}", error_class="bad_redirect"
            ) from exc
        except aiohttp.InvalidURL as exc:
            raise PermanentError(f"invalid URL {url}: {exc}", error_class="invalid_url") from exc
        except TimeoutError as exc:  # also aiohttp's ServerTimeoutError and its subclasses
            raise classify.timeout(url, request.timeout_s) from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            # Refused, reset, dropped mid-body, DNS failure: the network's fault, not the page's.
            raise classify.connection(url, f"{type(exc).__name__}: {exc}") from exc
        except aiohttp.ClientResponseError as exc:
            # Unparseable status line or headers: often a truncated response; worth a retry.
            raise RetryableError(
                f"{url}: bad response: {exc.message}", error_class="bad_response"
            ) from exc
        if not content_type and not classify.looks_like_html(body):
            raise classify.not_html(url)
        return Page(
            url=final_url,
            html=decode_html(body, content_type),
            status=status,
            headers=_lower_headers(resp_headers),
            requested_url=url,
            elapsed_s=loop.time() - started,
        )


class _OpenPage:
    """``open``'s context manager: a plain class, cheaper than @asynccontextmanager on the
    hot path, and there is nothing to release on exit."""

    __slots__ = ("_fetcher", "_request")

    def __init__(self, fetcher: HttpFetcher, request: FetchRequest) -> None:
        self._fetcher = fetcher
        self._request = request

    async def __aenter__(self) -> Page:
        return await self._fetcher.fetch(self._request)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


async def _read_capped(resp: aiohttp.ClientResponse, limit: int, url: str) -> bytes:
    """The (decompressed) body, refusing more than ``limit`` bytes before holding them."""
    length = resp.content_length
    # Content-Length counts compressed bytes; refuse early only when even those are over.
    if length is not None and length > limit:
        raise classify.too_large(url, limit)
    content = resp.content
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise classify.too_large(url, limit)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _lower_headers(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    """A plain dict with lower-cased names; repeated headers joined as HTTP allows."""
    out: dict[str, str] = {}
    for key, value in headers.items():
        name = key.lower()
        if name in out:
            out[name] = f"{out[name]}, {value}"
        else:
            out[name] = value
    return out
