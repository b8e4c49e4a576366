"""What a worker knows about one execution: its workflow, compiled rules, fetch settings.

Built once per execution per process from the StateStore and cached, so the hot path never
re-reads or re-compiles a workflow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec

from backends.errors import PermanentError
from backends.fetcher import FetchRequest
from backends.ratelimit import RatePolicy
from backends.state import Execution, LoginSession, StateStore
from worker import cookies
from worker.secrets import Resolved, SecretsMissing, load_secrets
from workflows import WorkflowInvalid, apply_overrides, validate_data
from workflows.rules import CrawlRules
from workflows.secrets import MissingSecretError
from workflows.spec import Phase, Workflow

if TYPE_CHECKING:
    from worker.proxies import ProxyPool


@dataclass(slots=True)
class ExecutionContext:
    execution: Execution
    workflow: Workflow
    rules: CrawlRules
    policy: RatePolicy
    phases: dict[str, Phase] = field(default_factory=dict)
    record_phases: frozenset[str] = frozenset()
    # The execution's secrets by name, for ${secret:NAME} in headers, cookies, the login and
    # proxy URLs (workflows/secrets.py); never logged, never written to a record.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    # The execution's login session once this process has it (worker/session.py), and the
    # lock its tasks take to get it, so one login runs per process at a time.
    session: LoginSession | None = field(default=None, repr=False)
    login_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _resolved: Resolved | None = field(default=None, repr=False)
    # The execution's proxies in this process, built on first use (worker/proxies.py): kept
    # here so their health and credentials end with the execution's context.
    proxy_pool: ProxyPool | None = field(default=None, repr=False)

    @classmethod
    def build(cls, execution: Execution, workflow: Workflow) -> ExecutionContext:
        p = workflow.politeness
        policy = RatePolicy(
            rate_per_s=p.requests_per_second,
            burst=p.burst,
            min_interval_s=p.delay_ms / 1000.0,
            max_concurrency=p.max_concurrency_per_host,
        )
        return cls(
            execution=execution,
            workflow=workflow,
            rules=CrawlRules(workflow),
            policy=policy,
            phases={ph.name: ph for ph in workflow.phases},
            record_phases=frozenset(ph.name for ph in workflow.phases if workflow.has_records(ph)),
        )

    @property
    def queue_window(self) -> int:
        """How many of the execution's tasks may be queued at once (0: no limit); set by
        whoever started it (see StateStore.register_tasks), the same for every worker."""
        return queue_window(self.execution)

    def request(self, url: str) -> FetchRequest:
        f = self.workflow.fetch
        return FetchRequest(
            url=url,
            timeout_s=f.timeout_s,
            user_agent=f.user_agent,
            max_body_bytes=f.max_body_bytes,
            wait_until=f.wait_until,
            block_resources=tuple(f.block_resources),
            headers=self.resolved.headers,
            cookies=self.cookies_for(url),
            session=f"{self.execution.tenant}/{self.execution.id}",
        )

    @property
    def resolved(self) -> Resolved:
        """``fetch.headers`` and ``fetch.cookies`` with their secrets, resolved once."""
        if self._resolved is None:
            try:
                self._resolved = Resolved.of(self.workflow.fetch, self.secrets)
            except MissingSecretError as exc:
                raise PermanentError(
                    f"execution {self.execution.id}: {exc}", error_class="missing_secret"
                ) from None
        return self._resolved

    def cookies_for(self, url: str) -> dict[str, str]:
        """The cookies a request to ``url`` carries: none outside the scope; else the
        workflow's, and the login's that match the URL (they win a shared name)."""
        fixed = self.resolved.cookies
        session = self.session.cookies if self.session is not None else ()
        if not (fixed or session) or not self.rules.in_scope(url):
            return {}
        return {**fixed, **cookies.matching(session, url)}

    def sensitive_values(self) -> list[str]:
        """What a failure message or a log line must not show: the secrets' values and the
        login's cookies."""
        values = list(self.secrets.values())
        if self.session is not None:
            values += [c.value for c in self.session.cookies]
        return values


def queue_window(execution: Execution) -> int:
    """The execution's queue window from its params (0: none)."""
    window = execution.params.get("queue_window")
    return window if isinstance(window, int) and window > 0 else 0


class ExecutionCache:
    """Execution contexts by id, loaded from the StateStore on first use."""

    def __init__(self, state: StateStore) -> None:
        self._state = state
        self._contexts: dict[str, ExecutionContext] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def state(self) -> StateStore:
        return self._state

    def put(self, ctx: ExecutionContext) -> None:
        self._contexts[ctx.execution.id] = ctx

    async def get(self, execution_id: str) -> ExecutionContext:
        ctx = self._contexts.get(execution_id)
        if ctx is not None:
            return ctx
        lock = self._locks.setdefault(execution_id, asyncio.Lock())
        async with lock:
            ctx = self._contexts.get(execution_id)
            if ctx is None:
                ctx = await self._load(execution_id)
                self._contexts[execution_id] = ctx
        return ctx

    async def refresh_status(self, execution_id: str) -> Execution | None:
        """Re-read the execution (to see a cancel); keeps the cached workflow."""
        execution = await self._state.get_execution(execution_id)
        ctx = self._contexts.get(execution_id)
        if execution is not None and ctx is not None:
            ctx.execution = execution
        return execution

    def known(self) -> list[str]:
        """The executions this process has loaded."""
        return list(self._contexts)

    def forget(self, execution_id: str) -> None:
        self._contexts.pop(execution_id, None)
        self._locks.pop(execution_id, None)

    async def _load(self, execution_id: str) -> ExecutionContext:
        execution = await self._state.get_execution(execution_id)
        if execution is None:
            raise PermanentError(f"unknown execution {execution_id}", error_class="no_execution")
        stored = await self._state.get_workflow(
            execution.tenant, execution.workflow, execution.workflow_version
        )
        if stored is None:
            raise PermanentError(
                f"workflow {execution.workflow} v{execution.workflow_version} is gone",
                error_class="no_workflow",
            )
        workflow = execution_workflow(execution, stored.spec_json)
        ctx = ExecutionContext.build(execution, workflow)
        try:
            ctx.secrets = await load_secrets(self._state, execution.tenant, workflow)
        except SecretsMissing as exc:  # deleted since the execution started
            raise PermanentError(str(exc), error_class="missing_secret") from None
        return ctx


def execution_workflow(execution: Execution, spec_json: str) -> Workflow:
    """The workflow an execution runs: its stored version with the execution's ``set``
    overrides (``key=value`` strings, validated when the execution was started)."""
    overrides = [str(o) for o in execution.params.get("set") or []]
    try:
        return with_overrides(spec_json, overrides)
    except WorkflowInvalid as exc:
        raise PermanentError(
            f"execution {execution.id}: its overrides no longer apply: {exc}",
            error_class="no_workflow",
        ) from None


def with_overrides(spec_json: str, overrides: list[str]) -> Workflow:
    """A stored spec with ``key=value`` overrides; ``WorkflowInvalid`` if they do not fit."""
    if not overrides:
        return msgspec.json.decode(spec_json, type=Workflow)
    return validate_data(apply_overrides(msgspec.json.decode(spec_json), overrides))
