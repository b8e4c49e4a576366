"""A small login-protected site for the session tests, on 127.0.0.1, in a thread (``ThreadedApp``).

``/login`` shows a form (user, password); a POST with the right pair sets an HttpOnly
session cookie and answers 302 to where the visitor was going. ``/private/N`` needs that
cookie, else it answers 302 to ``/login?next=...``; a private page has ``#logged-in`` and
links to two other private pages, so a crawl from ``/private/0`` reaches all ``size`` of
them. A session may be made to expire after ``session_pages`` private pages, to test
logging in again, and the first logins to fail with a 503. ``/echo`` shows the headers
it got; ``/hop`` redirects to ``/echo`` on another host name (``localhost``) of the same
server.

Every request is logged (method, path, host, its Cookie and Authorization headers, a POST's
form, an X-Api-Key) so tests can check what the crawler sent, and where.
"""

from __future__ import annotations

import html
import secrets
import threading
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler

from tests.threaded_app import ThreadedApp

USER = "alice"
PASSWORD = "s3cr3t-Pa55-word-7f2c"
COOKIE = "sid"


@dataclass(frozen=True, slots=True)
class Seen:
    method: str
    path: str
    host: str
    cookie: str
    authorization: str
    api_key: str = ""  # X-Api-Key
    form: dict[str, str] = field(default_factory=dict)


class LoginSite(ThreadedApp):
    """The site on a free port of 127.0.0.1, served from its own thread and event loop."""

    def __init__(self, size: int = 8, session_pages: int = 0, failing_logins: int = 0) -> None:
        super().__init__(self._build, name="login-site", label="the login site")
        self.size = size
        self.session_pages = session_pages  # 0: sessions never expire
        self.failing_logins = failing_logins  # the first this many POSTs answer 503
        self.seen: list[Seen] = []
        self._sessions: dict[str, int] = {}  # token -> private pages served with it
        self._lock = threading.Lock()

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def logins(self) -> int:
        """Successful logins so far."""
        with self._lock:
            return len(self._sessions)

    def requests(self, prefix: str = "") -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path.startswith(prefix)]

    def _build(self) -> web.Application:
        app = web.Application(middlewares=[self._log])
        app.router.add_get("/login", self._login_page)
        app.router.add_post("/login", self._login)
        app.router.add_get("/private/{n}", self._private)
        app.router.add_get("/echo", self._echo)
        app.router.add_get("/hop", self._hop)
        return app

    @web.middleware
    async def _log(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        form: dict[str, str] = {}
        if request.method == "POST":
            form = {k: str(v) for k, v in (await request.post()).items()}
        seen = Seen(
            method=request.method,
            path=request.path_qs,
            host=request.host,
            cookie=request.headers.get("Cookie", ""),
            authorization=request.headers.get("Authorization", ""),
            api_key=request.headers.get("X-Api-Key", ""),
            form=form,
        )
        with self._lock:
            self.seen.append(seen)
        return await handler(request)

    def _valid(self, request: web.Request) -> bool:
        token = request.cookies.get(COOKIE, "")
        with self._lock:
            used = self._sessions.get(token)
            if used is None or (self.session_pages and used >= self.session_pages):
                return False
            self._sessions[token] = used + 1
            return True

    async def _login_page(self, request: web.Request) -> web.Response:
        target = html.escape(request.query.get("next", "/private/0"))
        body = (
            "<html><body><h1>Log in</h1>"
            f'<form method="post" action="/login?next={target}">'
            '<input id="user" name="user"><input id="password" name="password" type="password">'
            '<button type="submit">Log in</button></form></body></html>'
        )
        return web.Response(text=body, content_type="text/html")

    async def _login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        with self._lock:
            self.failing_logins -= 1
            if self.failing_logins >= 0:
                raise web.HTTPServiceUnavailable()
        if form.get("user") != USER or form.get("password") != PASSWORD:
            body = '<html><body><p class="error">wrong user or password</p></body></html>'
            return web.Response(text=body, content_type="text/html")
        token = secrets.token_hex(8)
        with self._lock:
            self._sessions[token] = 0
        target = request.query.get("next", "/private/0")
        response = web.Response(status=302, headers={"Location": target})
        response.set_cookie(COOKIE, token, httponly=True, path="/")
        return response

    async def _private(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if not self._valid(request):
            raise web.HTTPFound(f"/login?next=/private/{n}")
        links = "".join(
            f'<a href="/private/{m}">page {m}</a>'
            for m in ((n + 1) % self.size, (2 * n + 1) % self.size)
        )
        body = (
            f'<html><body><div id="logged-in">{USER}</div><h1>Private {n}</h1>{links}'
            '<a href="/login">log in again</a></body></html>'
        )
        return web.Response(text=body, content_type="text/html")

    async def _echo(self, request: web.Request) -> web.Response:
        return web.Response(
            text="<html><body><h1>echo</h1></body></html>", content_type="text/html"
        )

    async def _hop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(self.url("/echo", host="localhost"))
