"""Forward proxies and a small site on 127.0.0.1, for the proxy tests.

``ProxyLab`` serves, from a thread with its own event loop (a ``ThreadedApp``, so a test may
run ``trawl run`` in its own loop meanwhile):

- a site: ``/p/<i>`` for i in 0..pages-1, each with an ``<h1>`` and links to ``/p/2i+1`` and
  ``/p/2i+2`` (a binary tree from ``/p/0``); ``/proxies.txt?key=K`` answers the proxy list
  a test put there, only with the right key. Every request is logged with the ``Via``
  header the proxy added, so a test sees which proxy each request came through.
- forward proxies (plain HTTP, absolute-form requests, keep-alive; a ``CONNECT`` is
  judged like a request, then refused with 405), each of one kind:
  ``open`` forwards everything; ``auth`` forwards only requests whose
  ``Proxy-Authorization`` carries its user and password (else 407 with a challenge, as a
  browser expects); ``ban`` answers 403 to everything; ``captcha`` answers 200 with a
  ``<div id="captcha">`` page. Each counts what it forwarded and what it answered itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
from aiohttp import web
from yarl import URL

from tests.threaded_app import ThreadedApp

ProxyKind = Literal["open", "auth", "ban", "captcha"]
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
CAPTCHA_PAGE = b'<html><body><div id="captcha">Prove you are human</div></body></html>'
BANNED_PAGE = b"<html><body><h1>Forbidden</h1></body></html>"


@dataclass
class LabProxy:
    """One forward proxy and what it saw."""

    label: str
    kind: ProxyKind
    user: str = ""
    password: str = ""
    port: int = 0
    forwarded: int = 0  # requests passed on to the site
    answered: Counter[int] = field(default_factory=Counter)  # statuses it gave itself
    connect_requests: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """``http://[user:password@]127.0.0.1:port``."""
        if user is None:
            return f"http://{self.address}"
        return f"http://{user}:{password}@{self.address}"

    def authorized(self, header: str | None) -> bool:
        if self.kind != "auth":
            return True
        expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return header == f"Basic {expected}"


@dataclass(frozen=True)
class SiteHit:
    path: str
    via: str | None


class ProxyLab(ThreadedApp):
    """The site and the proxies, served from a background thread."""

    def __init__(self, pages: int = 15) -> None:
        # shutdown_timeout: aiohttp's default, which the lab has always run with.
        super().__init__(
            self._build, name="proxy-lab", label="the proxy lab", shutdown_timeout=60.0
        )
        self.pages = pages
        self.proxies: dict[str, LabProxy] = {}
        self.hits: list[SiteHit] = []
        self.provider_list = ""
        self.provider_key = ""
        self.provider_calls = 0
        self._lock = threading.Lock()
        self._client: aiohttp.ClientSession | None = None

    # -- what tests read

    @property
    def site_port(self) -> int:
        return self.port

    def add(self, label: str, kind: ProxyKind, user: str = "", password: str = "") -> LabProxy:
        """Declare a proxy (before ``start``)."""
        proxy = LabProxy(label, kind, user, password)
        self.proxies[label] = proxy
        return proxy

    def url(self, path: str = "/p/0") -> str:
        return super().url(path)

    def page_paths(self) -> list[str]:
        return [f"/p/{i}" for i in range(self.pages)]

    def vias(self) -> Counter[str | None]:
        """How many site requests came through each proxy (by its label; None: direct)."""
        with self._lock:
            return Counter(hit.via for hit in self.hits if hit.path.startswith("/p/"))

    # -- serving

    def _build(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/p/{index}", self._page)
        app.router.add_get("/proxies.txt", self._provider)
        app.cleanup_ctx.append(self._serve_proxies)
        return app

    async def _serve_proxies(self, app: web.Application) -> AsyncIterator[None]:
        """The proxies (and the client they forward with) live as long as the site."""
        self._client = aiohttp.ClientSession(auto_decompress=False, trust_env=False)
        servers: list[asyncio.Server] = []
        try:
            for proxy in self.proxies.values():
                serve = functools.partial(self._proxy_connection, proxy)
                server = await asyncio.start_server(serve, "127.0.0.1", 0)
                proxy.port = server.sockets[0].getsockname()[1]
                servers.append(server)
            yield
        finally:
            for server in servers:
                server.close()
            await self._client.close()

    # -- the site

    async def _page(self, request: web.Request) -> web.Response:
        with self._lock:
            self.hits.append(SiteHit(request.path, request.headers.get("Via")))
        index = int(request.match_info["index"])
        if index >= self.pages:
            raise web.HTTPNotFound()
        links = "".join(
            f'<a href="/p/{child}">p{child}</a>'
            for child in (2 * index + 1, 2 * index + 2)
            if child < self.pages
        )
        body = f"<html><body><h1>Page {index}</h1>{links}</body></html>"
        return web.Response(text=body, content_type="text/html")

    async def _provider(self, request: web.Request) -> web.Response:
        with self._lock:
            self.provider_calls += 1
        if request.query.get("key") != self.provider_key:
            return web.Response(status=401, text="wrong key")
        return web.Response(text=self.provider_list, content_type="text/plain")

    # -- the proxies

    async def _proxy_connection(
        self, proxy: LabProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            await self._proxy_requests(proxy, reader, writer)
        finally:  # the client hung up, or the lab is stopping
            writer.close()

    async def _proxy_requests(
        self, proxy: LabProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, ValueError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, target, headers = _parse_head(head)
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                status, out_headers, out_body = await self._answer(
                    proxy, method, target, headers, body
                )
                keep = headers.get("proxy-connection", headers.get("connection", "")).lower()
                close = keep == "close" or method == "CONNECT"
                lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}"]
                lines += [f"{name}: {value}" for name, value in out_headers]
                lines.append(f"Content-Length: {len(out_body)}")
                lines.append("Connection: close" if close else "Connection: keep-alive")
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + out_body)
                await writer.drain()
                if close:
                    break

    async def _answer(
        self,
        proxy: LabProxy,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        html = [("Content-Type", "text/html")]
        if method == "CONNECT":
            proxy.connect_requests += 1
        if not proxy.authorized(headers.get("proxy-authorization")):
            challenge = [("Proxy-Authenticate", 'Basic realm="lab"'), *html]
            return self._own(proxy, 407, challenge, b"<html><body>login</body></html>")
        if proxy.kind == "ban":
            return self._own(proxy, 403, html, BANNED_PAGE)
        if method == "CONNECT":  # no tunnels here: the site is plain http
            return self._own(proxy, 405, [], b"")
        if proxy.kind == "captcha":
            return self._own(proxy, 200, html, CAPTCHA_PAGE)
        assert self._client is not None
        forward = {k: v for k, v in headers.items() if k not in _HOP_BY_HOP}
        forward["Via"] = proxy.label
        with self._lock:
            proxy.forwarded += 1
        async with self._client.request(
            method,
            URL(target, encoded=True),
            headers=forward,
            data=body or None,
            allow_redirects=False,
        ) as resp:
            payload = await resp.read()
            out = [(k, v) for k, v in resp.headers.items() if k.lower() not in _HOP_BY_HOP]
            return resp.status, out, payload

    def _own(
        self, proxy: LabProxy, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        with self._lock:
            proxy.answered[status] += 1
        return status, headers, body


_REASONS = {200: "OK", 403: "Forbidden", 405: "Method Not Allowed", 407: "Proxy Auth Required"}


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return method, target, headers


@contextlib.contextmanager
def proxy_lab(*kinds: tuple[str, ProxyKind], pages: int = 15) -> Iterator[ProxyLab]:
    """A started lab with proxies ``(label, kind)``; the ``auth`` ones log in as
    ``crawler`` with ``AUTH_PASSWORD``."""
    lab = ProxyLab(pages)
    for label, kind in kinds:
        if kind == "auth":
            lab.add(label, kind, user="crawler", password=AUTH_PASSWORD)
        else:
            lab.add(label, kind)
    with lab:
        yield lab


# Distinctive, so a test can grep every output for it.
AUTH_PASSWORD = "pw-Zq8x-n0t-1n-l0gs"
