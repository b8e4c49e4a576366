"""An execution's login session across its tasks, its workers and its re-login.

A workflow with a ``login`` logs in once per execution, before its first page, by
whichever worker needs the session first:

1. A task of the execution finds its context without a session; its process takes the
   context's lock (so its other tasks wait instead of logging in too) and reads the
   execution's session from the StateStore.
2. None stored yet: the process takes the claim ``login:<execution>:<generation>`` in the
   StateStore (the claim the sweep uses), logs in (``worker/login.py``), and stores the
   session (``put_session``: the first of a generation wins). A worker that does not get
   the claim hands its task back to the queue for a moment, untried: the session will be
   there when it comes back.
3. Every later request of the execution, on every worker, carries the session's cookies
   that match its URL (``ExecutionContext.cookies_for``). The session is stored per
   execution and read by that execution's tasks only.

A failed login is stored too, so every task of the execution fails at once with
``login_failed`` and its reason instead of crawling logged-out pages; a login that failed
for a passing reason (a timeout, a 5xx) is not stored, and the task that tried is retried.

Re-login: a page that ends on the login page (the site redirected a request that carried
the session to ``login.url``) means the site dropped the session. The execution logs in
once more (generation 2) and the page is handed back to be fetched again; if pages still
end on the login page after that, they fail with ``login_failed``.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Mapping
from typing import NoReturn

from yarl import URL

from backends.clock import Clock
from backends.errors import PermanentError
from backends.fetcher import Fetcher, FetchRequest
from backends.state import LoginSession, StateStore
from nodes.page import Page
from worker import cookies
from worker.context import ExecutionContext
from worker.endings import HandBack
from worker.login import LOGIN_FAILED, log_in
from worker.secrets import redact
from worker.stages import Plan

log = logging.getLogger(__name__)

# Logins per execution at most: the first, and one after the site logged the crawl out.
MAX_LOGINS = 2
# How long a task waits, back in the queue, while another worker logs in.
WAIT_FOR_LOGIN_S = 2.0
# The claim outlives the login's own timeout by this much, so a worker that died while
# logging in holds up the others only that long.
CLAIM_MARGIN_S = 10.0


class Sessions:
    """The login sessions of one process's executions (each kept in its context)."""

    def __init__(
        self,
        state: StateStore,
        fetchers: Mapping[str, Fetcher],
        clock: Clock,
        owner: str | None = None,
    ) -> None:
        self._state = state
        self._fetchers = fetchers
        self._clock = clock
        self._owner = owner or f"sessions-{uuid.uuid4().hex}"

    async def ensure(self, ctx: ExecutionContext) -> None:
        """Give ``ctx`` its session before its page is planned: read it, or log in. Raises
        ``login_failed`` when the execution's login failed, HandBack while another worker
        logs in."""
        if ctx.workflow.login is None:
            return
        if ctx.session is None:
            async with ctx.login_lock:
                if ctx.session is None:
                    ctx.session = await self._obtain(ctx, generation=1)
        if ctx.session.error is not None:
            raise PermanentError(ctx.session.error, error_class=LOGIN_FAILED)

    async def judge(self, plan: Plan, page: Page) -> None:
        """After a fetch: a page that ended on the login page means logged out. Then log in
        again (once per execution) and hand the task back to be fetched with the new
        session; HandBack or ``login_failed``."""
        ctx = plan.ctx
        login = ctx.workflow.login
        if login is None or ctx.session is None:
            return
        if not _same_page(page.url, login.url) or _same_page(plan.task.url, login.url):
            return
        await self._renew(ctx, plan.request, f"{plan.task.url} led to the login page")

    async def _renew(self, ctx: ExecutionContext, request: FetchRequest, why: str) -> NoReturn:
        current = ctx.session
        assert current is not None
        carried = cookies.matching(current.cookies, request.url)
        if not carried.items() <= request.cookies.items():
            raise HandBack(0.0)  # it went out with an older session: try the current one
        if current.generation >= MAX_LOGINS:
            raise PermanentError(
                f"{why} although the crawl logged in again: the site does not keep the session",
                error_class=LOGIN_FAILED,
            )
        async with ctx.login_lock:
            if ctx.session is current:
                ctx.session = await self._obtain(ctx, generation=current.generation + 1)
        raise HandBack(0.0)

    async def _obtain(self, ctx: ExecutionContext, *, generation: int) -> LoginSession:
        """The stored session of at least ``generation``, else one this process logs in
        for under the claim; HandBack when another process holds the claim."""
        execution_id = ctx.execution.id
        stored = await self._state.get_session(execution_id)
        if stored is not None and stored.generation >= generation:
            return stored
        login = ctx.workflow.login
        assert login is not None
        claim = f"login:{execution_id}:{generation}"
        if not await self._state.claim(claim, self._owner, login.timeout_s + CLAIM_MARGIN_S):
            raise HandBack(WAIT_FOR_LOGIN_S)
        now = self._clock.wall()
        try:
            session = await log_in(ctx, self._fetchers, generation=generation, now=now)
        except PermanentError as exc:
            if exc.error_class != LOGIN_FAILED:
                raise
            reason = redact(str(exc), ctx.secrets.values())
            session = LoginSession(error=reason, generation=generation, created_at=now)
        except Exception:
            # A reason that may pass (the task is retried): let the next worker that needs
            # the session try at once rather than wait for the claim to lapse.
            with contextlib.suppress(Exception):
                await self._state.claim(claim, self._owner, 0.0)
            raise
        if not await self._state.put_session(execution_id, session):
            stored = await self._state.get_session(execution_id)  # another worker's won
            if stored is not None:
                return stored
        if session.error is None:
            log.info(
                "execution %s logged in (login %d, %d cookies)",
                execution_id,
                generation,
                len(session.cookies),
            )
        else:  # the reason is masked already; it names no secret
            log.warning("execution %s could not log in: %s", execution_id, session.error)
        return session


def _same_page(url: str, login_url: str) -> bool:
    """The same scheme, host, port and path (the query, a ``?next=...``, aside)."""
    try:
        a, b = URL(url), URL(login_url)
    except ValueError:
        return False
    return a.origin() == b.origin() and (a.path or "/") == (b.path or "/")
