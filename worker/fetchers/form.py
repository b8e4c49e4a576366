"""A form POST as a browser sends one to log in, over the http engine's guarded session.

``post_form`` POSTs the fields (``application/x-www-form-urlencoded``) and follows the
redirects itself, one request per hop, so that every hop's host goes through the SSRF
guard as a page fetch's does (``worker/fetchers/http.py``), each hop's ``Set-Cookie``
lands in the login's ``Jar`` and each hop carries the jar's cookies for its URL: a login
typically answers 302 to a page that already needs the session it just set. 301, 302 and
303 continue as a GET, 307 and 308 POST again. The workflow's headers go to the login's
own origin only. The page it ends on is returned whatever its status: the caller judges it.
A login goes straight to the site, not through the workflow's proxies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from backends.errors import PermanentError, RetryableError
from backends.fetcher import FetchRequest
from nodes.page import Page
from worker.cookies import Jar, cookie_header
from worker.fetchers import classify
from worker.fetchers.decode import decode_html
from worker.fetchers.http import (
    _REDIRECT_STATUSES,
    _check_ip_literal,
    _lower_headers,
    _read_capped,
    _redirect_target,
)
from worker.netguard import BlockedAddressError, NetGuard

_KEEP_METHOD = frozenset({307, 308})


async def post_form(
    session: aiohttp.ClientSession,
    guard: NetGuard,
    request: FetchRequest,
    fields: Mapping[str, str],
    jar: Jar,
    *,
    max_redirects: int = 10,
) -> Page:
    """POST ``fields`` to ``request.url`` within ``request.timeout_s`` (redirects
    included); the final page. Errors are the engine's: ``timeout``, ``connection``,
    ``blocked_address``, ``redirect_loop``..."""
    url = request.url
    try:
        return await asyncio.wait_for(
            _exchange(session, guard, request, fields, jar=jar, max_redirects=max_redirects),
            request.timeout_s,
        )
    except BlockedAddressError:
        raise
    except TimeoutError as exc:
        raise classify.timeout(url, request.timeout_s) from exc
    except aiohttp.InvalidURL as exc:
        raise PermanentError(f"invalid URL {url}: {exc}", error_class="invalid_url") from exc
    except aiohttp.RedirectClientError as exc:
        raise PermanentError(
            f"{url} redirects to an unusable URL: {exc}", error_class="bad_redirect"
        ) from exc
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
        raise classify.connection(url, f"{type(exc).__name__}: {exc}") from exc
    except aiohttp.ClientResponseError as exc:
        raise RetryableError(
            f"{url}: bad response: {exc.message}", error_class="bad_response"
        ) from exc


async def _exchange(
    session: aiohttp.ClientSession,
    guard: NetGuard,
    request: FetchRequest,
    fields: Mapping[str, str],
    *,
    jar: Jar,
    max_redirects: int,
) -> Page:
    target = URL(request.url)
    origin = target.origin()
    method, data = "POST", dict(fields)
    for _hop in range(max_redirects + 1):
        headers: CIMultiDict[str] = CIMultiDict({"User-Agent": request.user_agent})
        if target.origin() == origin:
            headers.update(request.headers)
        cookies = jar.for_url(str(target))
        if cookies:
            headers["Cookie"] = cookie_header(cookies)
        if guard.enforcing:
            try:
                _check_ip_literal(guard, target)
            except BlockedAddressError as exc:
                first = target == URL(request.url)
                raise exc.for_url(str(target), None if first else request.url) from None
        async with session.request(
            method,
            target,
            data=data if method == "POST" else None,
            headers=headers,
            allow_redirects=False,
        ) as resp:
            jar.take(resp.headers.getall("Set-Cookie", []), str(target))
            location = resp.headers.get("Location") if resp.status in _REDIRECT_STATUSES else None
            if not location:
                body = await _read_capped(resp, request.max_body_bytes, str(target))
                return Page(
                    url=str(target),
                    html=decode_html(body, resp.headers.get("Content-Type")),
                    status=resp.status,
                    headers=_lower_headers(resp.headers),
                    requested_url=request.url,
                )
            if resp.status not in _KEEP_METHOD:
                method, data = "GET", {}
        target = _redirect_target(target, location)
    raise classify.redirect_loop(request.url, f"more than {max_redirects}")
