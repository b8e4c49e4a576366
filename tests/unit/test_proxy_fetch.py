"""The http engine through a proxy, one request at a time: credentials sent to the proxy
only, the proxy's own answers (a 407, a refused CONNECT) read as statuses, an unreachable
proxy told apart from an unreachable site, and the address guard applied to the proxy."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from backends.errors import PermanentError, RetryableError
from backends.fetcher import FetchRequest
from tests.proxy_lab import AUTH_PASSWORD, ProxyLab, proxy_lab
from worker.fetchers.http import HttpFetcher
from worker.netguard import BlockedAddressError, NetGuard
from worker.proxies import response_status


@pytest.fixture(scope="module")
def lab() -> Iterator[ProxyLab]:
    with proxy_lab(("login", "auth"), ("banned", "ban"), pages=3) as started:
        yield started


@pytest_asyncio.fixture
async def fetcher() -> AsyncIterator[HttpFetcher]:
    started = HttpFetcher()
    await started.start()
    try:
        yield started
    finally:
        await started.close()


async def test_the_proxy_gets_the_credentials_and_the_site_does_not(
    lab: ProxyLab, fetcher: HttpFetcher
) -> None:
    login = lab.proxies["login"]
    before = login.forwarded
    proxy = f"http://crawler:{AUTH_PASSWORD}@{login.address}"
    page = await fetcher.fetch(FetchRequest(url=lab.url("/p/1"), proxy=proxy))
    heading = page.css_first("h1")
    assert page.status == 200 and heading is not None and heading.text() == "Page 1"
    assert login.forwarded == before + 1
    assert lab.hits[-1].via == "login"


async def test_a_proxy_asking_for_credentials_answers_407(
    lab: ProxyLab, fetcher: HttpFetcher
) -> None:
    login = lab.proxies["login"]
    with pytest.raises(PermanentError) as refused:
        await fetcher.fetch(FetchRequest(url=lab.url("/p/1"), proxy=f"http://{login.address}"))
    assert response_status(refused.value) == 407


async def test_a_refused_connect_for_an_https_page_is_the_proxys_status(
    lab: ProxyLab, fetcher: HttpFetcher
) -> None:
    banned = lab.proxies["banned"]
    connects = banned.connect_requests
    with pytest.raises(PermanentError) as refused:
        # The name is never resolved here: the proxy would resolve it.
        await fetcher.fetch(FetchRequest(url="https://shop.invalid/", proxy=banned.url()))
    assert (refused.value.error_class, response_status(refused.value)) == ("http_403", 403)
    assert banned.connect_requests == connects + 1
    assert banned.answered[403] >= 1


async def test_an_unreachable_proxy_is_proxy_connection(fetcher: HttpFetcher) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{closed.getsockname()[1]}"
    with pytest.raises(RetryableError) as unreachable:
        await fetcher.fetch(
            FetchRequest(url="http://shop.invalid/", proxy=f"http://u:{AUTH_PASSWORD}@{dead}")
        )
    assert unreachable.value.error_class == "proxy_connection"
    assert str(unreachable.value).startswith(
        f"http://shop.invalid/: cannot connect to proxy {dead}: "
    )
    assert AUTH_PASSWORD not in str(unreachable.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_the_guard_refuses_a_proxy_on_a_refused_address(lab: ProxyLab, host: str) -> None:
    login = lab.proxies["login"]
    guarded = HttpFetcher(guard=NetGuard())  # loopback is not allowed
    await guarded.start()
    before = Counter(login.answered), login.forwarded
    try:
        with pytest.raises(BlockedAddressError) as blocked:
            await guarded.fetch(
                FetchRequest(url="http://shop.invalid/", proxy=f"http://{host}:{login.port}")
            )
    finally:
        await guarded.close()
    assert "loopback" in str(blocked.value) and host in str(blocked.value)
    assert (Counter(login.answered), login.forwarded) == before  # never connected to
