"""ThreadedApp: the one threaded server behind the tests' local sites.

It must answer from its own thread whatever the test's loop does, count requests when
asked, start again after a stop, and fail loudly, naming the site, when the app cannot
start.
"""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from aiohttp import web

from tests.threaded_app import ThreadedApp, by_path_qs


def hello_app() -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello {request.path_qs}")

    app = web.Application()
    app.router.add_get("/hello", hello)
    return app


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def test_serves_from_its_thread_and_counts_by_path_and_query() -> None:
    with ThreadedApp(hello_app, count_by=by_path_qs) as server:
        assert server.port > 0
        assert server.url("/hello") == f"http://127.0.0.1:{server.port}/hello"
        assert get(server.url("/hello?x=1")) == (200, "hello /hello?x=1")
        assert get(server.url("/hello?x=1"))[0] == 200
        assert get(server.url("/missing"))[0] == 404  # 404s are counted too
        assert server.count("/hello?x=1") == 2
        assert server.count("/missing") == 1
        assert server.total_requests() == 3


def test_starts_again_after_a_stop() -> None:
    server = ThreadedApp(hello_app)
    server.start()
    first = server.port
    assert get(server.url("/hello"))[0] == 200
    server.stop()
    server.stop()  # a second stop is harmless
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{first}/hello", timeout=5)
    with server:
        assert get(server.url("/hello")) == (200, "hello /hello")


def test_an_app_that_cannot_start_fails_the_start_naming_the_site() -> None:
    def broken() -> web.Application:
        raise ValueError("no pages today")

    server = ThreadedApp(broken, label="the broken site")
    with pytest.raises(RuntimeError, match="the broken site failed to start") as caught:
        server.start()
    assert isinstance(caught.value.__cause__, ValueError)


def test_counting_must_be_asked_for() -> None:
    with (
        ThreadedApp(hello_app, label="the quiet site") as server,
        pytest.raises(RuntimeError, match="the quiet site does not count requests"),
    ):
        server.count("/hello")
