"""Reading streamed bodies: JSON lines, and server-sent events, a piece at a time."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

_decoder = msgspec.json.Decoder(dict[str, Any])


async def lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The non-blank lines of a body read in ``chunks``, without their line ends."""
    rest = b""
    async for chunk in chunks:
        rest += chunk
        *complete, rest = rest.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
    if rest.strip():
        yield rest


async def json_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[dict[str, Any]]:
    """Each line of a JSON-lines body as a dict."""
    async for line in lines(chunks):
        yield _decoder.decode(line)


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event: its name (``message`` when unnamed) and its data."""

    name: str
    data: str


async def events(response: httpx.Response) -> AsyncIterator[Event]:
    """The server-sent events of a ``text/event-stream`` body, as they arrive (fields other
    than ``event`` and ``data``, and comments, are skipped)."""
    name, data = "", list[str]()
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield Event(name or "message", "\n".join(data))
            name, data = "", list[str]()
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if data:
        yield Event(name or "message", "\n".join(data))
