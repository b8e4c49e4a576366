"""``Client``: the orchestrator's HTTP API from Python, async, over httpx.

Responses are decoded into the API's own msgspec Structs (orchestrator/wire.py); an error
response raises the ``ApiError`` of its status (trawl/client/errors.py). One client holds
one connection pool: use it as ``async with Client(...) as client``.

Records, two ways (``Client.records``):

- ``follow=False``: the export (``GET /records``), each record once; a ``Conflict`` (409)
  until the execution has ended and its export is written.
- ``follow=True``: while the execution runs, records come from its part files as the
  outputs list names them (polled every ``poll_s``); once it has ended, the rest come from
  the export. Part files are at least once (a redelivered task writes its record again), so
  the client yields each record key, (phase, url), once: the first copy it reads. A key
  first read from a part is not yielded again from the export, whose copy (the one with
  the lowest depth) may differ in ``depth``, ``marker`` and ``fetched_at`` when a task ran
  twice. The keys yielded are the export's keys, plus, for a cancelled execution, those of
  pages whose part file was read before the export was written but that the export left
  out (docs/api.md, Cancel).

Following and waiting poll, and each poll counts against the key's request rate: on a 429
they wait as its ``Retry-After`` says, then go on.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import anyio
import httpx
import msgspec

from orchestrator.schedule_wire import ScheduleCreate, ScheduleOut, ScheduleUpdate
from orchestrator.wire import (
    TERMINAL_STATUSES,
    ExecutionOut,
    ExecutionSummary,
    OutputOut,
    StartRequest,
    WorkflowOut,
    WorkflowSummary,
)
from trawl.client.errors import Conflict, TooManyRequests, raise_for
from trawl.client.streams import events, json_lines

T = TypeVar("T")

PART = "part"  # the kind of output a running execution writes; every other kind is export
# How long a follower waits, once the execution has ended, for its export to be written
# (a cancelled execution's comes once its workers let go: seconds, a minute or two at most).
EXPORT_WAIT_S = 300.0
JSON = "application/json"
YAML = "application/yaml"


class Client:
    """The API of the orchestrator at ``base_url``, as the tenant of ``api_key``.

    ``timeout``: seconds for connecting and for each read (the event stream ``wait`` reads
    has no read timeout: it is quiet while nothing changes). ``transport``: an httpx
    transport to use instead of the network (e.g. ``httpx.ASGITransport`` in tests)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "trawl-client"},
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- workflows

    async def put_workflow(self, workflow: str | Mapping[str, Any]) -> WorkflowOut:
        """Store ``workflow`` (YAML or JSON text, or a mapping): version 1 of a new name,
        else a new version of the existing one. An invalid one is an ``Unprocessable``
        listing every problem."""
        body, content_type = _document(workflow)
        headers = {"Content-Type": content_type}
        try:
            return await self._call(
                "POST", "/v1/workflows", WorkflowOut, content=body, headers=headers
            )
        except Conflict:  # the name exists (the document is valid): a new version
            path = f"/v1/workflows/{_segment(_name_of(workflow))}"
            return await self._call("PUT", path, WorkflowOut, content=body, headers=headers)

    async def get_workflow(self, name: str, version: int | None = None) -> WorkflowOut:
        """One version of a workflow (default: the latest), its source and its spec."""
        params = {"version": version} if version is not None else None
        path = f"/v1/workflows/{_segment(name)}"
        return await self._call("GET", path, WorkflowOut, params=params)

    async def list_workflows(self) -> list[WorkflowSummary]:
        """The latest version of each of the tenant's workflows."""
        return await self._call("GET", "/v1/workflows", list[WorkflowSummary])

    async def delete_workflow(self, name: str) -> None:
        """Every version; a ``Conflict`` while an execution of it is pending or running."""
        response = await self._http.delete(f"/v1/workflows/{_segment(name)}")
        await raise_for(response)

    # -- executions

    async def list_executions(
        self, workflow: str | None = None, *, limit: int = 50, offset: int = 0
    ) -> list[ExecutionSummary]:
        """One page of executions, newest first: of ``workflow``, or every one of the
        tenant. ``limit`` is 1 to 500, as the API takes it."""
        path = (
            f"/v1/workflows/{_segment(workflow)}/executions"
            if workflow is not None
            else "/v1/executions"
        )
        params = {"limit": limit, "offset": offset}
        return await self._call("GET", path, list[ExecutionSummary], params=params)

    async def iter_executions(
        self, workflow: str | None = None, *, page_size: int = 100
    ) -> AsyncIterator[ExecutionSummary]:
        """Every execution, newest first, a page at a time."""
        offset = 0
        while True:
            page = await self.list_executions(workflow, limit=page_size, offset=offset)
            for execution in page:
                yield execution
            if len(page) < page_size:
                return
            offset += len(page)

    async def start(
        self, workflow: str, set: Sequence[str] = (), *, recrawl_of: str | None = None
    ) -> ExecutionOut:
        """Start the latest version of ``workflow`` with ``set`` overrides (``max_pages=100``,
        as ``trawl run --set`` takes them); answers once its start URLs are published.
        ``recrawl_of``: an ended execution of the workflow whose pages this one asks again
        with conditional requests (docs/recrawls.md); a ``Conflict`` while it runs."""
        body = msgspec.json.encode(StartRequest(set=list(set), recrawl_of=recrawl_of))
        path = f"/v1/workflows/{_segment(workflow)}/executions"
        headers = {"Content-Type": JSON}
        return await self._call("POST", path, ExecutionOut, content=body, headers=headers)

    async def get(self, execution_id: str) -> ExecutionOut:
        """The execution: status, counters, funnel, health."""
        return await self._call("GET", _execution(execution_id), ExecutionOut)

    async def cancel(self, execution_id: str) -> ExecutionOut:
        """Cancel it; a ``Conflict`` if it has already ended."""
        return await self._call("POST", f"{_execution(execution_id)}/cancel", ExecutionOut)

    async def wait(
        self, execution_id: str, *, timeout_s: float | None = None, poll_s: float = 1.0
    ) -> ExecutionOut:
        """The execution once it has ended (completed, cancelled or failed).

        Listens to its event stream; when the tenant's stream quota is used up or the
        stream breaks, asks every ``poll_s`` instead. ``TimeoutError`` after ``timeout_s``
        (None: no limit)."""
        async with asyncio.timeout(timeout_s):
            final = await self._end_from_events(execution_id)
            while final is None:
                execution = await _patiently(functools.partial(self.get, execution_id))
                if execution.status in TERMINAL_STATUSES:
                    final = execution
                else:
                    await asyncio.sleep(poll_s)
            return final

    async def _end_from_events(self, execution_id: str) -> ExecutionOut | None:
        """The final execution from the event stream; None when the stream cannot say."""
        url = f"{_execution(execution_id)}/events"
        quiet = httpx.Timeout(self._timeout, read=None)
        try:
            async with self._http.stream("GET", url, timeout=quiet) as response:
                await raise_for(response)
                async for event in events(response):
                    if event.name == "progress":
                        execution = msgspec.json.decode(event.data, type=ExecutionOut)
                        if execution.status in TERMINAL_STATUSES:
                            return execution
                    elif event.name == "end":
                        return None
        except (TooManyRequests, httpx.TransportError):
            return None  # the stream quota is used up, or the stream broke: poll
        return None

    # -- outputs and records

    async def outputs(self, execution_id: str) -> list[OutputOut]:
        """The objects the execution wrote (part files, export files), with their kind."""
        return await self._call("GET", f"{_execution(execution_id)}/outputs", list[OutputOut])

    async def iter_object(self, execution_id: str, path: str) -> AsyncIterator[bytes]:
        """One output object's bytes as they arrive; ``path`` as ``outputs`` lists it (or
        without its leading ``<execution_id>/``). ``NotFound`` for a path not listed."""
        relative = path.removeprefix(f"{execution_id}/")
        url = f"{_execution(execution_id)}/objects/{quote(relative, safe='/')}"
        async for chunk in self._stream(url):
            yield chunk

    async def _stream(self, url: str, *, patient: bool = False) -> AsyncIterator[bytes]:
        """A body as it arrives; ``patient``: after a 429, asked again when it says."""
        while True:
            try:
                async with self._http.stream("GET", url) as response:
                    await raise_for(response)  # a 429 comes before any byte of the body
                    async for chunk in response.aiter_bytes():
                        yield chunk
                    return
            except TooManyRequests as exc:
                if not patient:
                    raise
                await _back_off(exc)

    async def records(
        self,
        execution_id: str,
        *,
        follow: bool = False,
        phase: str | None = None,
        poll_s: float = 1.0,
    ) -> AsyncIterator[dict[str, Any]]:
        """The execution's records as dicts (docs/records.md), only ``phase``'s if given.

        Without ``follow``: the export, each record once, sorted by phase and URL; a
        ``Conflict`` until the execution has ended. With ``follow``: records from part
        files as they are written (outputs polled every ``poll_s``), then, once the
        execution has ended, the rest from the export; each (phase, url) once (the module's
        docstring has the details)."""
        if not follow:
            async for record in self._export(execution_id):
                if phase is None or record.get("phase") == phase:
                    yield record
            return
        seen: set[tuple[str, str]] = set()
        read: set[str] = set()
        status = functools.partial(self.get, execution_id)
        listing = functools.partial(self.outputs, execution_id)
        while (await _patiently(status)).status not in TERMINAL_STATUSES:
            for output in await _patiently(listing):
                if output.kind != PART or output.path in read:
                    continue
                relative = output.path.removeprefix(f"{execution_id}/")
                url = f"{_execution(execution_id)}/objects/{quote(relative, safe='/')}"
                async for record in json_lines(self._stream(url, patient=True)):
                    if _first(record, phase, seen):
                        yield record
                read.add(output.path)
            await asyncio.sleep(poll_s)
        async for record in self._export(execution_id, wait_s=EXPORT_WAIT_S, poll_s=poll_s):
            if _first(record, phase, seen):
                yield record

    async def _export(
        self, execution_id: str, *, wait_s: float = 0.0, poll_s: float = 1.0
    ) -> AsyncIterator[dict[str, Any]]:
        """The export's records. With ``wait_s`` (a follower's), asked again while it is
        not written yet (409, every ``poll_s`` up to ``wait_s``, then the ``Conflict`` is
        raised) and after a 429's Retry-After."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        url = f"{_execution(execution_id)}/records"
        while True:
            try:
                async with self._http.stream("GET", url) as response:
                    if response.status_code != 409 or loop.time() >= deadline:
                        await raise_for(response)
                        async for record in json_lines(response.aiter_bytes()):
                            yield record
                        return
            except TooManyRequests as exc:
                if not wait_s:
                    raise
                await _back_off(exc)
                continue
            await asyncio.sleep(poll_s)

    async def download_export(
        self, execution_id: str, directory: str | os.PathLike[str]
    ) -> list[Path]:
        """Write every export file of the execution (each output that is not a part file:
        records, summary, manifest, whatever the outputs list names) under ``directory``,
        at its path there (``<execution_id>/export/...``, the tree ``trawl run --out``
        writes). A ``Conflict`` while the export is not written yet. Returns the files."""
        wanted = [o for o in await self.outputs(execution_id) if o.kind != PART]
        if not wanted:
            raise Conflict(
                409, f"execution {execution_id} has no export yet: it is written when it ends"
            )
        root = Path(directory)
        written = []
        for output in wanted:
            target = root.joinpath(*_relative_parts(output.path))
            await _save(self.iter_object(execution_id, output.path), target)
            written.append(target)
        return written

    # -- schedules (docs/schedules.md)

    async def create_schedule(
        self,
        workflow: str,
        cron: str,
        *,
        timezone: str = "UTC",
        set: Sequence[str] = (),
        webhook: str | None = None,
        version: int | None = None,
        overlap: str = "skip",
        missed: str = "skip",
        enabled: bool = True,
    ) -> ScheduleOut:
        """Start ``workflow`` at the times ``cron`` (five fields) names in ``timezone``;
        an ``Unprocessable`` names each bad field (``cron``, ``timezone``, ...)."""
        request = msgspec.convert(
            {
                "workflow": workflow,
                "cron": cron,
                "timezone": timezone,
                "set": list(set),
                "webhook": webhook,
                "workflow_version": version,
                "overlap": overlap,
                "missed": missed,
                "enabled": enabled,
            },
            ScheduleCreate,
        )
        body = msgspec.json.encode(request)
        headers = {"Content-Type": JSON}
        return await self._call("POST", "/v1/schedules", ScheduleOut, content=body, headers=headers)

    async def list_schedules(self) -> list[ScheduleOut]:
        """The tenant's schedules, oldest first."""
        return await self._call("GET", "/v1/schedules", list[ScheduleOut])

    async def get_schedule(self, schedule_id: str) -> ScheduleOut:
        """One schedule with its newest fires (``history``), newest first."""
        return await self._call("GET", _schedule(schedule_id), ScheduleOut)

    async def update_schedule(self, schedule_id: str, **changes: Any) -> ScheduleOut:
        """Change the fields named (``cron=``, ``timezone=``, ``set=``, ``enabled=``,
        ``overlap=``, ``missed=``, ``webhook=``, ``workflow=``, ``workflow_version=``)."""
        body = msgspec.json.encode(msgspec.convert(changes, ScheduleUpdate))
        headers = {"Content-Type": JSON}
        path = _schedule(schedule_id)
        return await self._call("PATCH", path, ScheduleOut, content=body, headers=headers)

    async def pause_schedule(self, schedule_id: str) -> ScheduleOut:
        """No fire until it is resumed."""
        return await self.update_schedule(schedule_id, enabled=False)

    async def resume_schedule(self, schedule_id: str) -> ScheduleOut:
        """Fire again, from its next time after now (what passed meanwhile is not run)."""
        return await self.update_schedule(schedule_id, enabled=True)

    async def delete_schedule(self, schedule_id: str) -> None:
        """The schedule and its history; the executions it started stay."""
        await raise_for(await self._http.delete(_schedule(schedule_id)))

    # -- plumbing

    async def _call(self, method: str, url: str, into: type[T], **kwargs: Any) -> T:
        response = await self._http.request(method, url, **kwargs)
        await raise_for(response)
        return msgspec.json.decode(response.content, type=into)


async def _patiently(call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, asked again after each 429 as long as the 429 says when."""
    while True:
        try:
            return await call()
        except TooManyRequests as exc:
            await _back_off(exc)


async def _back_off(refused: TooManyRequests) -> None:
    """Wait as a 429 asks, for a poll that goes on after it; a 429 that says no wait (the
    tenant's cap of running executions) is raised."""
    if refused.retry_after_s is None:
        raise refused
    await asyncio.sleep(refused.retry_after_s)


def _schedule(schedule_id: str) -> str:
    return f"/v1/schedules/{_segment(schedule_id)}"


def _execution(execution_id: str) -> str:
    return f"/v1/executions/{_segment(execution_id)}"


def _segment(value: str) -> str:
    """One path segment, whatever it holds."""
    return quote(value, safe="")


def _first(record: dict[str, Any], phase: str | None, seen: set[tuple[str, str]]) -> bool:
    """Whether to yield ``record``: of the phase asked for, and its key not yet yielded."""
    key = (str(record.get("phase")), str(record.get("url")))
    if (phase is not None and key[0] != phase) or key in seen:
        return False
    seen.add(key)
    return True


def _document(workflow: str | Mapping[str, Any]) -> tuple[bytes, str]:
    """The body and its content type: a mapping as JSON; text as it is, JSON when it
    starts with ``{``, else YAML."""
    if isinstance(workflow, str):
        return workflow.encode("utf-8"), JSON if workflow.lstrip().startswith("{") else YAML
    return msgspec.json.encode(dict(workflow)), JSON


def _name_of(workflow: str | Mapping[str, Any]) -> str:
    """The ``name`` of a workflow document the API has accepted as valid."""
    if isinstance(workflow, str):
        import yaml  # only here: a YAML document's name, after a 409

        document = yaml.safe_load(workflow)
    else:
        document = workflow
    name = document.get("name") if isinstance(document, Mapping) else None
    if not isinstance(name, str):
        raise ValueError("the workflow document has no name")
    return name


def _relative_parts(path: str) -> tuple[str, ...]:
    """An output's path as safe relative parts: never absolute, never ``..``."""
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"refusing to write an output at {path!r}")
    return parts


async def _save(chunks: AsyncIterator[bytes], target: Path) -> None:
    """Stream ``chunks`` into ``target``; the file appears whole or not at all."""
    await anyio.Path(target.parent).mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        async with await anyio.open_file(partial, "wb") as out:
            async for chunk in chunks:
                await out.write(chunk)
        await anyio.Path(partial).replace(target)
    finally:
        await anyio.Path(partial).unlink(missing_ok=True)
