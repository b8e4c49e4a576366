"""The Fetcher port: URL in, Page out, with errors that say whether to retry."""

from __future__ import annotations

import abc
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from nodes.page import Page


@dataclass(frozen=True, slots=True)
class FetchRequest:
    url: str
    timeout_s: float = 30.0
    user_agent: str = "trawl"
    max_body_bytes: int = 10 * 1024 * 1024
    wait_until: str = "domcontentloaded"  # browser engine
    block_resources: tuple[str, ...] = ("image", "font", "media")  # browser engine
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    # Cookies (name -> value) the execution carries (workflow cookies, a login's session),
    # sent to ``url``'s host; secrets already resolved.
    cookies: dict[str, str] = field(default_factory=dict, repr=False)
    # The proxy this request goes through (http://user:pass@host:port), None: direct.
    proxy: str | None = field(default=None, repr=False)
    # Whose browser state the page shares (an execution): the browser engine never lets
    # two sessions share a context, so cookies, storage and tabs stay within one.
    session: str = ""
    # The nodes need the live page (script nodes run JavaScript in its tab): a stored copy
    # must not stand in for the fetch (worker/fetchers/cache.py).
    live: bool = False


class Fetcher(abc.ABC):
    """Fetches one URL. The Page is usable only inside the ``open`` block: for the browser
    engine it is a live tab, which script nodes need."""

    @abc.abstractmethod
    def open(self, request: FetchRequest) -> AbstractAsyncContextManager[Page]:
        """Fetch ``request.url``; raise RetryableError or PermanentError on failure."""

    async def stored(self, request: FetchRequest) -> bool:
        """Whether ``open(request)`` would answer from a stored copy (a cache hit), without
        a request to the site: such a fetch needs no politeness permit."""
        return False

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Acquire what the fetcher needs (a session, a browser)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release it."""


@dataclass(frozen=True, slots=True)
class Document:
    """A response body as bytes, with what is known of its fetch: the final ``url`` after
    redirects, the status, the headers (lower-cased names) and how long it took."""

    url: str
    status: int
    headers: dict[str, str]
    content_type: str | None
    body: bytes
    elapsed_s: float


@runtime_checkable
class DocumentFetcher(Protocol):
    """A fetcher that also hands over a body of any type as bytes (the http engine): what
    sitemaps and a proxy provider's list are read with."""

    async def fetch_document(self, request: FetchRequest) -> Document: ...
