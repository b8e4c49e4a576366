"""The BlobStore port: objects under slash-separated names (output parts, exports).

Names are validated here, once, for every adapter: relative, no empty, ``.`` or ``..``
segments, no backslashes or control characters. That keeps a local directory and a bucket
interchangeable and keeps a name from escaping the store's root.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import AsyncIterator

import msgspec

from backends.errors import InvalidInputError, PermanentError

MAX_PATH_BYTES = 1024  # GCS's limit on object names
# Adapters that write through a temporary object name it with this suffix; no user object
# may end with it, and listings skip it.
TEMP_SUFFIX = ".trawl-tmp"


class BlobInfo(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    size_bytes: int


class BlobNotFound(PermanentError, KeyError):
    """No object has that name. Also a KeyError, the usual way to say a key is missing."""

    error_class = "blob_not_found"

    def __str__(self) -> str:
        # KeyError would quote the message.
        return str(self.args[0]) if self.args else ""


def validate_path(path: str) -> str:
    """``path`` if it is a valid object name, else InvalidInputError saying why."""
    if not isinstance(path, str) or not path:
        raise InvalidInputError("object name is empty")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise InvalidInputError(f"object name longer than {MAX_PATH_BYTES} bytes: {path[:80]!r}…")
    if path.startswith("/"):
        raise InvalidInputError(f"object name must be relative: {path!r}")
    if "\\" in path or any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise InvalidInputError(f"object name has a backslash or control character: {path!r}")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidInputError(f"object name has an empty, . or .. segment: {path!r}")
        if segment.endswith(TEMP_SUFFIX):
            raise InvalidInputError(f"object name ends with reserved {TEMP_SUFFIX}: {path!r}")
    return path


def validate_prefix(prefix: str) -> str:
    """``prefix`` if it can start valid object names ("" lists everything)."""
    if prefix == "":
        return prefix
    validate_path(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


class BlobStore(abc.ABC):
    """Objects by name. Writes are atomic: a reader sees the whole object or none."""

    @abc.abstractmethod
    async def write(self, path: str, data: bytes, *, if_absent: bool = False) -> bool:
        """Store ``data`` under ``path``; with ``if_absent``, only if no object has that name
        (idempotent names: a redelivered task cannot overwrite or duplicate a part).
        Return whether it was written."""

    @abc.abstractmethod
    async def read(self, path: str) -> bytes:
        """The object's bytes; BlobNotFound if there is none."""

    @abc.abstractmethod
    async def list(self, prefix: str = "") -> builtins.list[BlobInfo]:
        """Objects whose names start with ``prefix`` (plain string prefix), by name."""

    @abc.abstractmethod
    async def exists(self, path: str) -> bool:
        """Whether an object has that name."""

    @abc.abstractmethod
    async def delete(self, path: str) -> None:
        """Remove the object; nothing if there is none."""

    async def iter_chunks(self, path: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The object in pieces, for streaming an export. Adapters that can stream without
        holding the whole object override this."""
        data = await self.read(path)
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
