"""A GCS emulator for integration tests: gcp-storage-emulator, taught generation preconditions.

``ensure_gcs()`` starts the emulator (in memory, loopback only) when nothing answers on
127.0.0.1:9023, as a detached daemon later sessions reuse (see tests/services/pubsub.py for
why); ``python -m tests.services.gcs stop`` stops the one these helpers started. Every test
gets a bucket of its own (``unique_bucket``, the ``gcs_bucket`` fixture), deleted with its
objects afterwards so the long-lived in-memory emulator does not grow.

gcp-storage-emulator ignores ``ifGenerationMatch``: an upload that must not overwrite
(``if_generation_match=0``, what GcsBlobStore's ``if_absent`` sends) overwrites anyway, where
GCS answers 412. So the emulator is run by this module (``python -m tests.services.gcs
serve``, the same server as ``gcp-storage-emulator start --in-memory``) with its upload
handlers wrapped to check the precondition first, as GCS does. The server handles one
request at a time, so the check and the write cannot interleave with another upload.
``ensure_gcs`` checks that an emulator it finds already running honours preconditions, and
says so clearly if it does not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any

import pytest

from tests.services import env_restored, port_open
from tests.services.pubsub import start_detached, stop_detached

HOST = "127.0.0.1"
PORT = 9023
START_DEADLINE_S = 30.0
ENV_VAR = "STORAGE_EMULATOR_HOST"
PROJECT = "trawl-test"
NAME = "gcs-emulator"

_lock = threading.Lock()
_checked: set[int] = set()


def ensure_gcs(port: int = PORT) -> str:
    """``http://host:port`` of the emulator, started first if nothing answers there."""
    endpoint = f"http://{HOST}:{port}"
    with _lock:
        if not port_open(HOST, port):
            command = [sys.executable, "-m", "tests.services.gcs", "serve", f"--port={port}"]
            start_detached(NAME, command, port, START_DEADLINE_S)
        if port not in _checked:
            _check_preconditions(endpoint)
            _checked.add(port)
    return endpoint


def _check_preconditions(endpoint: str) -> None:
    """Fail clearly if the emulator at ``endpoint`` would let if_absent writes overwrite."""
    bucket = f"trawl-probe-{uuid.uuid4().hex[:12]}"
    _http(f"{endpoint}/storage/v1/b?project={PROJECT}", json.dumps({"name": bucket}), "json")
    upload = f"{endpoint}/upload/storage/v1/b/{bucket}/o?uploadType=media&name=probe"
    _http(upload + "&ifGenerationMatch=0", "first", "octet-stream")
    status = _http(upload + "&ifGenerationMatch=0", "second", "octet-stream", ok=(412,))
    _http(f"{endpoint}/storage/v1/b/{bucket}/o/probe", "", "json", method="DELETE")
    _http(f"{endpoint}/storage/v1/b/{bucket}", "", "json", method="DELETE")
    if status != HTTPStatus.PRECONDITION_FAILED:
        raise RuntimeError(
            f"the GCS emulator at {endpoint} ignores ifGenerationMatch (it overwrote an object "
            "that must not be): stop it, and the tests start one that does not "
            "(python -m tests.services.gcs start)"
        )


def _http(
    url: str, body: str, content_type: str, ok: tuple[int, ...] = (), method: str = "POST"
) -> int:
    """Send ``body``; the status (an HTTP error is one only if listed in ``ok``)."""
    request = urllib.request.Request(url, data=body.encode() or None, method=method)
    request.add_header("Content-Type", f"application/{content_type}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        if exc.code in ok:
            return exc.code
        raise RuntimeError(f"GCS emulator: {method} {url} -> {exc.code}") from None


def use_gcs_emulator(port: int = PORT) -> str:
    """Start the emulator if needed and point Google's clients in this process at it."""
    endpoint = ensure_gcs(port)
    os.environ[ENV_VAR] = endpoint
    return endpoint


def unique_bucket() -> str:
    return f"trawl-test-{uuid.uuid4().hex[:16]}"


def delete_bucket(client: Any, name: str) -> None:
    """Delete bucket ``name`` and its objects, if it exists (a storage.Client)."""
    bucket = client.bucket(name)
    with contextlib.suppress(Exception):
        for blob in client.list_blobs(bucket):
            with contextlib.suppress(Exception):
                blob.delete(timeout=10)
        bucket.delete(timeout=10)


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """The emulator's endpoint, with STORAGE_EMULATOR_HOST set for the session."""
    with env_restored(ENV_VAR):
        yield use_gcs_emulator()


@pytest.fixture
def gcs_bucket(gcs_emulator: str) -> Iterator[str]:
    """A bucket name for this test alone (created by the store under test), deleted with
    its objects afterwards."""
    from backends.gcp import make_storage_client

    name = unique_bucket()
    try:
        yield name
    finally:
        client = make_storage_client()
        try:
            delete_bucket(client, name)
        finally:
            client.close()


# -- the emulator, with preconditions


def _precondition_guard(
    handler: Callable[..., Any], not_found: type[Exception]
) -> Callable[..., Any]:
    """``handler`` (an upload handler), answering 412 first when the request's
    ``ifGenerationMatch`` does not hold for the object as it is now."""

    def guarded(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        wanted = request.query.get("ifGenerationMatch")
        if wanted:
            bucket, name = _upload_target(request, storage)
            if name is not None and _generation(storage, bucket, name) != int(wanted[0]):
                response.status = HTTPStatus.PRECONDITION_FAILED
                response.json(
                    {
                        "error": {
                            "code": 412,
                            "message": "At least one of the pre-conditions you specified "
                            "did not hold.",
                        }
                    }
                )
                return None
        return handler(request, response, storage, *args, **kwargs)

    def _upload_target(request: Any, storage: Any) -> tuple[str, str | None]:
        if "upload_id" in request.query:  # a resumable upload's chunk
            obj = storage.get_resumable_file_obj(request.query["upload_id"][0])
            return obj["bucket"], obj["name"]
        bucket = request.params["bucket_name"]
        if "name" in request.query:
            return bucket, request.query["name"][0]
        data = request.data
        if isinstance(data, dict):
            meta = data.get("meta")
            name = meta.get("name") if isinstance(meta, dict) else data.get("name")
            return bucket, name
        return bucket, None

    def _generation(storage: Any, bucket: str, name: str) -> int:
        try:
            return int(storage.get_file_obj(bucket, name)["generation"])
        except not_found:
            return 0

    return guarded


def serve(port: int) -> None:
    """Run gcp-storage-emulator in memory on ``HOST:port`` until SIGTERM; exit at once if
    the port is taken (then another session's emulator serves)."""
    from functools import partial
    from http.server import HTTPServer

    from gcp_storage_emulator import server
    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects
    from gcp_storage_emulator.storage import Storage

    wrapped = {
        fn: _precondition_guard(fn, NotFound) for fn in (objects.insert, objects.upload_partial)
    }
    for _regex, handlers in server.HANDLERS:
        for method, handler in list(handlers.items()):
            if handler in wrapped:
                handlers[method] = wrapped[handler]
    # The router falls back to objects.insert for uploads posted without /upload.
    objects.insert = wrapped[objects.insert]

    # One request at a time (HTTPServer, not ThreadingHTTPServer), as the emulator serves.
    httpd = HTTPServer((HOST, port), partial(server.RequestHandler, Storage(use_memory_fs=True)))

    def stop(*_: object) -> None:
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the GCS emulator of the integration tests")
    parser.add_argument("command", choices=["serve", "start", "stop"])
    parser.add_argument("--port", type=int, default=PORT)
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.port)
    elif args.command == "start":
        print(ensure_gcs(args.port))
    else:
        print("stopped" if stop_detached(NAME, args.port) else "not started by us")
