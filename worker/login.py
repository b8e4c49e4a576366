"""Logging an execution in: the workflow's ``login``, run once, its cookies the session.

Two ways, whatever engine the phases use (docs/sessions.md):

- ``form``: the fields, secrets resolved, are POSTed as
  ``application/x-www-form-urlencoded`` to ``login.url`` through the http engine's guarded
  session; its redirects are followed with the cookies collected on the way, and every
  hop's ``Set-Cookie`` is kept (``worker/fetchers/form.py``).
- ``script``: ``login.url`` opens in a browser context of its own, the script is called
  with the secrets ``login.secrets`` names, and the context's cookies (HttpOnly ones
  included) are kept (``BrowserFetcher.script_login``).

Then the page the login ended on must match ``success_selector`` when there is one, and the
login must have set a cookie. A login that failed says why in one line (the status, the
selector not found, the script's error), under the error class ``login_failed``: retryable
when the reason may pass (a timeout, a refused connection, a 5xx), permanent otherwise.
Messages never hold a secret's value: what could is masked by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from backends.errors import PermanentError, RetryableError, TrawlError
from backends.fetcher import Fetcher, FetchRequest
from backends.state import LoginSession, SessionCookie
from worker.context import ExecutionContext
from worker.cookies import MAX_COOKIES, Jar
from worker.fetchers import classify
from worker.fetchers.http import HttpFetcher
from workflows.secrets import resolve
from workflows.spec import Login

LOGIN_FAILED = "login_failed"


def login_error(message: str, *, retry: bool, delay_s: float | None = None) -> TrawlError:
    """A failed login, as the task that needed it ends: retried, or failed for good."""
    if retry:
        return RetryableError(message, error_class=LOGIN_FAILED, delay_s=delay_s)
    return PermanentError(message, error_class=LOGIN_FAILED)


def _from(exc: TrawlError, what: str) -> TrawlError:
    """An engine's error (timeout, connection, http_503...) as a failed login."""
    delay_s = exc.delay_s if isinstance(exc, RetryableError) else None
    return login_error(
        f"{what}: {exc} ({exc.error_class})",
        retry=isinstance(exc, RetryableError),
        delay_s=delay_s,
    )


async def log_in(
    ctx: ExecutionContext, fetchers: Mapping[str, Fetcher], *, generation: int, now: datetime
) -> LoginSession:
    """Run ``ctx``'s login; the session it ends with (``generation``: the how-manieth login
    of the execution). Raises ``login_failed`` errors (``login_error``)."""
    login = ctx.workflow.login
    assert login is not None, "only called for a workflow with a login"
    fetch = ctx.workflow.fetch
    request = FetchRequest(
        url=login.url,
        timeout_s=login.timeout_s,
        user_agent=fetch.user_agent,
        max_body_bytes=fetch.max_body_bytes,
        wait_until=fetch.wait_until,
        headers=ctx.resolved.headers,
        # The workflow's own cookies, when the login page is in scope; never an older
        # session's (a re-login starts afresh).
        cookies=ctx.resolved.cookies if ctx.rules.in_scope(login.url) else {},
        session=f"{ctx.execution.tenant}/{ctx.execution.id}",
    )
    if login.form is not None:
        cookies = await _form(login, login.form, request, ctx.secrets, fetchers=fetchers, now=now)
    else:
        cookies = await _script(login, request, ctx.secrets, fetchers)
    if not cookies:
        raise login_error(
            f"login at {login.url} set no cookie: there is no session to carry", retry=False
        )
    return LoginSession(cookies=cookies[:MAX_COOKIES], generation=generation, created_at=now)


async def _form(
    login: Login,
    form: Mapping[str, str],
    request: FetchRequest,
    secrets: Mapping[str, str],
    *,
    fetchers: Mapping[str, Fetcher],
    now: datetime,
) -> list[SessionCookie]:
    http = fetchers.get("http")
    if not isinstance(http, HttpFetcher):
        raise login_error("login.form needs the http engine, which this worker lacks", retry=False)
    fields = {name: resolve(value, secrets) for name, value in form.items()}
    jar = Jar(now)
    what = f"login: POST {login.url}"
    try:
        page = await http.submit_form(request, fields, jar)
    except TrawlError as exc:
        raise _from(exc, what) from None
    error = classify.status_error(page.status, page.url, page.headers.get("retry-after"))
    if error is not None:
        where = "" if page.url == login.url else f" (at {page.url})"
        raise login_error(
            f"{what} ended with HTTP {page.status}{where}",
            retry=isinstance(error, RetryableError),
            delay_s=error.delay_s if isinstance(error, RetryableError) else None,
        )
    selector = login.success_selector
    if selector is not None and page.css_first(selector) is None:
        raise login_error(
            f"{what} ended on {page.url}, which does not match success_selector {selector!r} "
            "(wrong credentials?)",
            retry=False,
        )
    return jar.cookies


async def _script(
    login: Login,
    request: FetchRequest,
    secrets: Mapping[str, str],
    fetchers: Mapping[str, Fetcher],
) -> list[SessionCookie]:
    from worker.fetchers.browser import BrowserFetcher  # the browser only when it is used
    from worker.fetchers.lazy import LazyFetcher

    browser = fetchers.get("browser")
    if isinstance(browser, LazyFetcher):
        browser = await browser.fetcher()
    if not isinstance(browser, BrowserFetcher):
        raise login_error(
            "login.script needs the browser engine, which this worker lacks", retry=False
        )
    assert login.script is not None
    argument = {name: secrets[name] for name in login.secrets}
    what = f"login script at {login.url}"
    try:
        outcome = await browser.script_login(
            request, login.script, argument, login.success_selector
        )
    except RuntimeError as exc:  # the script threw
        raise login_error(f"{what}: {exc}", retry=False) from None
    except TrawlError as exc:
        raise _from(exc, what) from None
    if not outcome.matched:
        raise login_error(
            f"{what} ended on {outcome.url}, which does not match success_selector "
            f"{login.success_selector!r} within {login.timeout_s:g} s (wrong credentials?)",
            retry=False,
        )
    return [
        SessionCookie(
            name=cookie.get("name", ""),
            value=cookie.get("value", ""),
            domain=cookie.get("domain", "").lstrip("."),
            path=cookie.get("path", "/") or "/",
            host_only=not cookie.get("domain", "").startswith("."),
            secure=bool(cookie.get("secure", False)),
        )
        for cookie in outcome.cookies
        if cookie.get("name")
    ]
