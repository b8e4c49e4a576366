"""The http engine: plain HTTP with aiohttp, no JavaScript, thousands of pages a second.

One ClientSession (one connection pool, one DNS cache) serves every fetch of the process;
the hot path does one request, one streamed read with a size cap, one decode, and builds
the Page. Everything a response can mean is mapped to Retryable/PermanentError by
``classify`` so both engines report failures under the same classes.

The SSRF guard (``worker.netguard``) is applied on every connection: host names through
``GuardedResolver``, which hands aiohttp only addresses it has checked (so a DNS answer
cannot change between the check and the connection), and IP-literal hosts, which aiohttp
connects to without asking its resolver, by ``get_following_redirects`` before each request.
That function follows redirects itself, one request per hop, so every hop's host goes
through the same two checks.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.helpers import is_ip_address
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from backends.errors import PermanentError, RetryableError, TrawlError
from backends.fetcher import Document, Fetcher, FetchRequest
from nodes.page import Page
from worker.cookies import Jar, cookie_header
from worker.fetchers import classify
from worker.fetchers.decode import decode_html
from worker.netguard import BlockedAddressError, NetGuard, parse_address

DEFAULT_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Not sent on to another origin after a redirect (as aiohttp and browsers do).
_CREDENTIAL_HEADERS = ("Authorization", "Cookie", "Proxy-Authorization")


class GuardedResolver(AbstractResolver):
    """A resolver that refuses a host when ANY of its addresses is refused by ``guard``
    and otherwise returns exactly the addresses it checked, which are the ones aiohttp
    then connects to. ``inner`` does the lookup (default: aiohttp's)."""

    def __init__(self, guard: NetGuard, inner: AbstractResolver | None = None) -> None:
        self._guard = guard
        self._inner = inner if inner is not None else aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            # BlockedAddressError is not an OSError: aiohttp lets it through unwrapped.
            self._guard.check_address(host, result["host"])
        return results

    async def close(self) -> None:
        await self._inner.close()


def guarded_connector(
    guard: NetGuard, *, resolver: AbstractResolver | None = None, **options: Any
) -> aiohttp.TCPConnector:
    """A TCPConnector whose DNS answers go through ``guard`` (when it can refuse anything).
    ``resolver`` replaces aiohttp's own lookup; ``options`` are TCPConnector's."""
    if guard.enforcing:
        resolver = GuardedResolver(guard, resolver)
    return aiohttp.TCPConnector(resolver=resolver, **options)


def _check_ip_literal(guard: NetGuard, url: URL) -> None:
    """Refuse an IP-literal host, which aiohttp connects to without resolving."""
    host = url.raw_host
    if host is None or not is_ip_address(host):
        return
    if parse_address(host) is None:
        # aiohttp refuses legacy numeric forms (127.1, 2130706433) itself; anything else
        # that looks like an address to it and not to us is no URL we will fetch.
        raise aiohttp.InvalidUrlClientError(url, f"{host} is not a valid IP address")
    guard.check_address(host, host)


def _redirect_target(current: URL, location: str) -> URL:
    """Where a Location header sends a request for ``current`` (as aiohttp resolves it)."""
    try:
        target = URL(location)
    except ValueError as exc:
        raise aiohttp.InvalidUrlRedirectClientError(
            location, "Server attempted redirecting to a location that does not look like a URL"
        ) from exc
    scheme = target.scheme
    if scheme not in ("http", "https", ""):
        raise aiohttp.NonHttpUrlRedirectClientError(location)
    if not scheme or (scheme == current.scheme and target.raw_host is None):
        # "/path", "path", "//host/path", and "http:/path" which browsers read as a path.
        relative = URL(location[len(scheme) + 1 :]) if scheme else target
        target = current.join(relative)
    if not target.raw_host:
        raise aiohttp.InvalidUrlRedirectClientError(location, "no host")
    return target


async def get_following_redirects(
    session: aiohttp.ClientSession,
    url: str,
    guard: NetGuard,
    *,
    headers: Mapping[str, str],
    timeout_s: float,
    max_redirects: int,
    client_timeout: aiohttp.ClientTimeout | None = None,
    proxy: Proxy | None = None,
    private: Collection[str] = (),
) -> aiohttp.ClientResponse:
    """GET ``url`` and follow up to ``max_redirects`` redirects, one request per hop, each
    hop's host checked by ``guard``; the final response (the caller releases it). Through
    ``proxy`` every hop goes to the proxy, whose address the guard checks (``Proxy``).

    Raises BlockedAddressError naming the refused hop, PermanentError ``redirect_loop``
    past ``max_redirects``, TimeoutError when the hops together take over ``timeout_s``,
    and aiohttp's errors as ``session.get`` does. ``client_timeout`` (total ``timeout_s``)
    is the first hop's, for callers that keep one per value. A redirect to another origin
    drops ``Authorization``, ``Cookie`` and ``Proxy-Authorization`` from the next hops, and
    the headers named in ``private`` (a workflow's own, which may hold secrets).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        target = URL(url)  # what session.get(url) would request
    except ValueError as exc:
        raise aiohttp.InvalidUrlClientError(url) from exc
    hop_headers: Mapping[str, str] = headers
    hop_timeout = client_timeout or aiohttp.ClientTimeout(total=timeout_s)
    redirects = 0
    while True:
        try:
            if guard.enforcing:
                _check_ip_literal(guard, target)
            resp = await session.get(
                target,
                headers=hop_headers,
                timeout=hop_timeout,
                allow_redirects=False,
                proxy=proxy.url if proxy is not None else None,
            )
        except BlockedAddressError as exc:
            raise exc.for_url(str(target), url if redirects else None) from exc
        location = resp.headers.get("Location") if resp.status in _REDIRECT_STATUSES else None
        if not location:  # a final response (a 3xx without Location is one too)
            return resp
        resp.release()
        redirects += 1
        if redirects > max_redirects:
            raise classify.redirect_loop(url, f"more than {max_redirects}")
        following = _redirect_target(target, location)
        if following.origin() != target.origin():
            stripped = CIMultiDict(hop_headers)
            for name in (*_CREDENTIAL_HEADERS, *private):
                stripped.popall(name, None)
            hop_headers = stripped
        target = following
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError
        hop_timeout = aiohttp.ClientTimeout(total=remaining)


@dataclass(frozen=True, slots=True)
class Proxy:
    """An http proxy as aiohttp takes it: its URL with the credentials in it (aiohttp
    sends them as ``Proxy-Authorization`` on each request to an http page and on the
    CONNECT for an https one); ``repr`` shows only its ``host:port``.

    The guard: the proxy's own address is checked like a target host's, a name through
    ``GuardedResolver`` when aiohttp connects to the proxy, an IP literal by ``checked``.
    The target's host is resolved by the proxy, out of our sight: through a proxy, the
    guard can refuse IP-literal targets (as without) but not names that resolve inward
    on the proxy's side (docs/proxies.md)."""

    url: URL = field(repr=False)
    name: str  # host:port, how errors name it

    @classmethod
    def of(cls, proxy: str) -> Proxy:
        """``http://[user:password@]host:port`` (what ``FetchRequest.proxy`` holds)."""
        try:
            parsed = URL(proxy)
            name = f"{parsed.raw_host}:{parsed.port}"
        except ValueError:  # the message could hold the credentials: not passed on
            raise PermanentError(
                "the proxy URL does not parse", error_class="proxy_config"
            ) from None
        return cls(parsed, name)

    def checked(self, guard: NetGuard) -> Proxy:
        """Refuse an IP-literal proxy the guard does not allow (BlockedAddressError)."""
        if guard.enforcing:
            try:
                _check_ip_literal(guard, self.url)
            except BlockedAddressError as exc:
                raise exc.for_url(f"proxy {self.name}") from None
        return self


class HttpFetcher(Fetcher):
    """Fetcher over one shared aiohttp session.

    ``limit`` caps open connections of the whole process (politeness caps them per host
    upstream); ``ttl_dns_cache_s`` keeps resolved names that long. Cookies are not kept:
    tasks of different executions share the session, and a crawl should not carry state
    from one page to the next. ``guard`` decides which addresses may be connected to
    (default: all of them); ``resolver`` replaces aiohttp's DNS lookup under it.
    """

    def __init__(
        self,
        *,
        guard: NetGuard | None = None,
        resolver: AbstractResolver | None = None,
        limit: int = 256,
        limit_per_host: int = 0,
        ttl_dns_cache_s: int = 300,
        max_redirects: int = 10,
        max_header_bytes: int = 16384,
    ) -> None:
        self._guard = guard if guard is not None else NetGuard.allow_all()
        self._resolver = resolver
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._ttl_dns_cache_s = ttl_dns_cache_s
        self._max_redirects = max_redirects
        self._max_header_bytes = max_header_bytes
        self._session: aiohttp.ClientSession | None = None
        # ClientTimeout objects are immutable; fetches mostly share a handful of values.
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    async def start(self) -> None:
        """Open the session; must run inside the event loop that will fetch."""
        if self._session is not None:
            return
        connector = guarded_connector(
            self._guard,
            resolver=self._resolver,
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
        doc = await self._get(request, html=True)
        return Page(
            url=doc.url,
            html=decode_html(doc.body, doc.content_type),
            status=doc.status,
            headers=doc.headers,
            requested_url=request.url,
            elapsed_s=doc.elapsed_s,
        )

    async def fetch_document(self, request: FetchRequest) -> Document:
        """Fetch a document of any type (a sitemap, gzipped or not): its bytes as received
        (a body with ``Content-Encoding`` decoded), at most ``max_body_bytes`` of them,
        under the same guard, redirects and error classes as a page."""
        return await self._get(request, html=False)

    async def submit_form(self, request: FetchRequest, fields: Mapping[str, str], jar: Jar) -> Page:
        """A login's form POST to ``request.url`` through this session and its guard, the
        cookies of every hop collected in ``jar`` (worker/fetchers/form.py)."""
        from worker.fetchers.form import post_form  # it builds on this module's helpers

        if self._session is None:
            raise RuntimeError("HttpFetcher.start() was not called")
        return await post_form(
            self._session, self._guard, request, fields, jar, max_redirects=self._max_redirects
        )

    async def _get(self, request: FetchRequest, *, html: bool) -> Document:
        """One GET with its redirects; with ``html``, a declared or sniffed non-HTML body
        is refused (``not_html``) before it is read whole."""
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
        if request.cookies:  # dropped on a redirect to another origin, as Authorization is
            headers["Cookie"] = cookie_header(request.cookies)
        proxy = Proxy.of(request.proxy).checked(self._guard) if request.proxy else None
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            resp = await get_following_redirects(
                session,
                url,
                self._guard,
                headers=headers,
                timeout_s=request.timeout_s,
                max_redirects=self._max_redirects,
                client_timeout=timeout,
                proxy=proxy,
                private=request.headers.keys(),  # the workflow's: not sent off its origin
            )
            async with resp:
                status = resp.status
                resp_headers = resp.headers
                error = classify.status_error(
                    status,
                    url,
                    resp_headers.get("Retry-After"),
                    conditional=classify.is_conditional(headers),
                )
                if error is not None:
                    raise error
                # A 304 answers a recrawl's conditional request (worker/recrawl.py): it has
                # no body to judge as HTML.
                html = html and status != 304
                content_type = resp_headers.get("Content-Type")
                error = classify.content_type_error(content_type, url) if html else None
                if error is not None:
                    raise error
                body = await _read_capped(resp, request.max_body_bytes, url)
                final_url = str(resp.url)
        except aiohttp.RedirectClientError as exc:  # Location is not an http(s) URL
            raise PermanentError(
                f"{url} redirects to an unusable URL: {exc}", error_class="bad_redirect"
            ) from exc
        except aiohttp.InvalidURL as exc:
            raise PermanentError(f"invalid URL {url}: {exc}", error_class="invalid_url") from exc
        except TimeoutError as exc:  # also aiohttp's ServerTimeoutError and its subclasses
            raise classify.timeout(url, request.timeout_s) from exc
        except (aiohttp.ClientProxyConnectionError, aiohttp.ClientHttpProxyError) as exc:
            raise _proxy_error(exc, url, proxy) from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            # Refused, reset, dropped mid-body, DNS failure: the network's fault, not the page's.
            raise classify.connection(url, f"{type(exc).__name__}: {exc}") from exc
        except aiohttp.ClientResponseError as exc:
            # Unparseable status line or headers: often a truncated response; worth a retry.
            raise RetryableError(
                f"{url}: bad response: {exc.message}", error_class="bad_response"
            ) from exc
        if html and not content_type and not classify.looks_like_html(body):
            raise classify.not_html(url)
        return Document(
            url=final_url,
            status=status,
            headers=_lower_headers(resp_headers),
            content_type=content_type,
            body=body,
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


def _proxy_error(
    exc: aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError,
    url: str,
    proxy: Proxy | None,
) -> TrawlError:
    """A proxy that cannot be reached is ``proxy_connection``; one that refuses a CONNECT
    (an https page) answers with a status, judged as a page's status would be (a 403 or
    407 then bans it like the same answer to an http page)."""
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        error = classify.status_error(exc.status, url)
        return error or classify.connection(url, f"the proxy answered {exc.status}")
    name = proxy.name if proxy is not None else "?"
    return RetryableError(
        f"{url}: cannot connect to proxy {name}: {exc.os_error}", error_class="proxy_connection"
    )


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
