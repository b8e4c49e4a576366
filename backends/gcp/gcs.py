"""GcsBlobStore: the BlobStore of distributed mode, objects in a Google Cloud Storage bucket.

The GCS client is synchronous (requests underneath); every call runs in a thread via
``asyncio.to_thread``, here and nowhere else. An object upload is atomic in GCS, so no
temporary name is needed; ``if_absent`` is ``ifGenerationMatch=0``, which GCS checks and
applies atomically, so of two writers of one name exactly one wins.

Names are ``prefix + path``; listings strip the prefix again, so a store with a prefix reads
like a bucket of its own. Every call has a deadline: the client's retries (connection
errors, 429, 5xx) stop after ``retry_deadline_s`` and the call raises RetryableError naming
the endpoint, so an unreachable GCS turns into a retry later, not a hung worker.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from google.api_core import exceptions as google_exceptions
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from backends.blobs import (
    TEMP_SUFFIX,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    validate_path,
    validate_prefix,
)
from backends.errors import InvalidInputError, PermanentError, RetryableError

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
DEFAULT_PROJECT = "trawl-local"  # what an emulator is given; real GCS takes the client's own

T = TypeVar("T")

# What readers of the bucket (the console, gsutil, a browser) are told an object holds.
# Gzipped exports (.jsonl.gz, .csv.gz) are stored as gzip, without a Content-Encoding: GCS
# would otherwise decompress them on download and ranged reads would break.
_CONTENT_TYPES = {
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".csv": "text/csv",
    ".txt": "text/plain",
    ".gz": "application/gzip",
    ".parquet": "application/vnd.apache.parquet",
}
_RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
RETRY_FIRST_DELAY_S = 0.5
RETRY_MAX_DELAY_S = 4.0


def make_storage_client(project: str | None = None) -> storage.Client:
    """A storage client as Google's tools configure one: ``STORAGE_EMULATOR_HOST`` set means
    the emulator, anonymous, with a project id (the emulator needs one, any will do)."""
    if os.environ.get(EMULATOR_ENV):
        return storage.Client(
            project=project or DEFAULT_PROJECT,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        )
    return storage.Client(project=project)


class GcsBlobStore(BlobStore):
    """Objects under ``prefix`` in ``bucket``. ``create_bucket`` creates the bucket on first
    use if it is missing (emulators, compose); production buckets exist already and the
    store never needs the permission to create one."""

    def __init__(
        self,
        client: storage.Client,
        bucket: str,
        prefix: str = "",
        *,
        create_bucket: bool = False,
        timeout_s: float = 60.0,
        retry_deadline_s: float = 120.0,
        owns_client: bool = False,
    ) -> None:
        if not bucket:
            raise InvalidInputError("a GCS bucket name is required")
        validate_prefix(prefix)
        if prefix and not prefix.endswith("/"):
            prefix += "/"  # a prefix names a folder of the bucket, not half a name
        self.bucket_name = bucket
        self.prefix = prefix
        self._client = client
        self._bucket = client.bucket(bucket)
        self._create_bucket = create_bucket
        self._bucket_ready = not create_bucket
        self._bucket_lock = asyncio.Lock()
        self._timeout_s = timeout_s
        # Backoff capped at a few seconds (the client's default grows to a minute): a call
        # goes through soon after an outage of seconds to minutes ends.
        self._retry = DEFAULT_RETRY.with_timeout(retry_deadline_s).with_delay(
            initial=RETRY_FIRST_DELAY_S, maximum=RETRY_MAX_DELAY_S, multiplier=2.0
        )
        self._owns_client = owns_client

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        project: str | None = None,
        create_bucket: bool = False,
        timeout_s: float = 60.0,
        retry_deadline_s: float = 120.0,
    ) -> GcsBlobStore:
        """``gs://bucket/prefix``, with a client of its own (closed by ``close``)."""
        parts = urlsplit(url)
        if parts.scheme != "gs" or not parts.netloc:
            raise InvalidInputError(f"not a GCS URL (gs://bucket/prefix): {url!r}")
        return cls(
            make_storage_client(project),
            parts.netloc,
            parts.path.strip("/"),
            create_bucket=create_bucket,
            timeout_s=timeout_s,
            retry_deadline_s=retry_deadline_s,
            owns_client=True,
        )

    @property
    def endpoint(self) -> str:
        """Where the store talks to (the emulator's address, or GCS's)."""
        return str(self._client.api_endpoint)

    def _name(self, path: str) -> str:
        return self.prefix + validate_path(path)

    # -- the port

    async def write(self, path: str, data: bytes, *, if_absent: bool = False) -> bool:
        name = self._name(path)
        blob = self._bucket.blob(name)

        def upload() -> bool:
            try:
                blob.upload_from_string(
                    data,
                    content_type=_content_type(name),
                    if_generation_match=0 if if_absent else None,
                    timeout=self._timeout_s,
                    # A retried if_absent upload whose first try landed sees 412 and says
                    # "not written": harmless under idempotent names. A plain overwrite is
                    # retried too; our writers write whole objects under their own names.
                    retry=self._retry,
                )
            except google_exceptions.PreconditionFailed:
                return False
            return True

        return await self._call(f"write {name!r}", upload)

    async def read(self, path: str) -> bytes:
        name = self._name(path)
        blob = self._bucket.blob(name)

        def download() -> bytes:
            try:
                data: bytes = blob.download_as_bytes(timeout=self._timeout_s, retry=self._retry)
            except google_exceptions.NotFound:
                raise BlobNotFound(f"no object {path!r}") from None
            return data

        return await self._call(f"read {name!r}", download)

    async def iter_chunks(self, path: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Ranged reads of one generation: an object replaced while it streams is an error
        to retry, never a mix of two versions."""
        if chunk_size <= 0:
            raise InvalidInputError(f"chunk_size must be > 0, not {chunk_size}")
        name = self._name(path)

        def metadata() -> tuple[int, int]:
            blob = self._bucket.get_blob(name, timeout=self._timeout_s, retry=self._retry)
            if blob is None:
                raise BlobNotFound(f"no object {path!r}")
            return int(blob.size or 0), int(blob.generation or 0)

        size, generation = await self._call(f"stat {name!r}", metadata)
        blob = self._bucket.blob(name)

        def chunk(start: int) -> bytes:
            try:
                data: bytes = blob.download_as_bytes(
                    start=start,
                    end=min(start + chunk_size, size) - 1,
                    if_generation_match=generation or None,
                    timeout=self._timeout_s,
                    retry=self._retry,
                )
            except google_exceptions.NotFound:
                raise BlobNotFound(f"object {path!r} was deleted while being read") from None
            except google_exceptions.PreconditionFailed:
                raise RetryableError(
                    f"object {path!r} was replaced while being read", error_class="gcs_changed"
                ) from None
            return data

        for start in range(0, size, chunk_size):
            yield await self._call(f"read {name!r}", chunk, start)

    async def list(self, prefix: str = "") -> builtins.list[BlobInfo]:
        validate_prefix(prefix)
        full = self.prefix + prefix

        def listing() -> builtins.list[BlobInfo]:
            found = [
                BlobInfo(path=blob.name[len(self.prefix) :], size_bytes=int(blob.size or 0))
                for blob in self._client.list_blobs(
                    self._bucket,
                    prefix=full or None,
                    fields="items(name,size),nextPageToken",
                    timeout=self._timeout_s,
                    retry=self._retry,
                )
                if not blob.name.endswith(TEMP_SUFFIX)
            ]
            found.sort(key=lambda info: info.path)  # GCS lists by name already; be sure
            return found

        return await self._call(f"list {full!r}", listing)

    async def exists(self, path: str) -> bool:
        name = self._name(path)
        blob = self._bucket.blob(name)

        def exists() -> bool:
            return bool(blob.exists(timeout=self._timeout_s, retry=self._retry))

        return await self._call(f"stat {name!r}", exists)

    async def delete(self, path: str) -> None:
        name = self._name(path)
        blob = self._bucket.blob(name)

        def delete() -> None:
            with contextlib.suppress(google_exceptions.NotFound):
                blob.delete(timeout=self._timeout_s, retry=self._retry)

        await self._call(f"delete {name!r}", delete)

    async def close(self) -> None:
        if self._owns_client:
            await asyncio.to_thread(self._client.close)

    async def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (what a setup job runs once)."""
        self._bucket_ready = False
        await self._ensure_bucket()

    async def check_writable(self, probe_path: str) -> None:
        """For readiness: the bucket exists and takes a write and a delete (of
        ``probe_path``). PermanentError saying which, when not."""
        if not self._create_bucket:

            def bucket_exists() -> bool:
                return bool(self._bucket.exists(timeout=self._timeout_s, retry=None))

            if not await asyncio.to_thread(
                self._guarded, f"stat bucket {self.bucket_name!r}", bucket_exists
            ):
                raise PermanentError(
                    f"bucket {self.bucket_name!r} does not exist", error_class="gcs_missing"
                )
        name = self._name(probe_path)
        blob = self._bucket.blob(name)

        def write_and_delete() -> None:
            blob.upload_from_string(b"", timeout=self._timeout_s, retry=None)
            with contextlib.suppress(google_exceptions.NotFound):
                blob.delete(timeout=self._timeout_s, retry=None)

        await self._call(f"write and delete probe {name!r}", write_and_delete)

    # -- internals

    async def _ensure_bucket(self) -> None:
        async with self._bucket_lock:
            if self._bucket_ready:
                return

            def create() -> None:
                if self._bucket.exists(timeout=self._timeout_s, retry=self._retry):
                    return
                with contextlib.suppress(google_exceptions.Conflict):  # created meanwhile
                    self._client.create_bucket(
                        self.bucket_name, timeout=self._timeout_s, retry=self._retry
                    )

            await asyncio.to_thread(self._guarded, f"create bucket {self.bucket_name!r}", create)
            self._bucket_ready = True

    async def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        if not self._bucket_ready:
            await self._ensure_bucket()
        return await asyncio.to_thread(self._guarded, what, fn, *args)

    def _guarded(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, its vendor errors turned into ours (this runs in the thread)."""
        try:
            return fn(*args)
        except google_exceptions.GoogleAPICallError as exc:
            raise self._api_error(what, exc) from exc
        except (
            google_exceptions.RetryError,
            requests.RequestException,
            auth_exceptions.TransportError,
            ConnectionError,
            TimeoutError,
        ) as exc:
            raise RetryableError(
                f"GCS at {self.endpoint} unreachable ({what}): {_reason(exc)}",
                error_class="gcs_unavailable",
            ) from exc

    def _api_error(self, what: str, exc: google_exceptions.GoogleAPICallError) -> Exception:
        code = int(exc.code or 0)
        message = f"GCS at {self.endpoint} refused to {what}: {code} {exc.message}"
        if code in _RETRYABLE_STATUS:
            return RetryableError(message, error_class="gcs_unavailable")
        if code == 404:
            return PermanentError(
                f"{message} (does bucket {self.bucket_name!r} exist?)", error_class="gcs_missing"
            )
        if code == 400:
            return InvalidInputError(message, error_class="gcs_bad_request")
        return PermanentError(message, error_class="gcs_error")


def _content_type(name: str) -> str:
    return _CONTENT_TYPES.get(os.path.splitext(name)[1], "application/octet-stream")


def _reason(exc: BaseException) -> str:
    """The root cause's message: a RetryError's own text only says that time ran out."""
    cause = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    if isinstance(exc, google_exceptions.RetryError) and cause is not None:
        return f"{exc.message}; last error: {type(cause).__name__}: {cause}"
    return f"{type(exc).__name__}: {exc}"
