"""LocalBlobStore: a BlobStore in a local directory (embedded mode's ``--out``).

Writes go to a temporary file beside the target and are renamed into place, so a reader
never sees half an object; ``if_absent`` links instead of renaming, which fails if the name
is taken, so two writers of one name cannot both win. Small objects are read and written on
the event loop, where a thread hop would cost more than the I/O; large ones and directory
walks go to a thread.

A directory cannot hold both an object ``a`` and objects under ``a/``; writing one of them
when the other exists is an InvalidInputError (a bucket would allow it).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import os
import secrets
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from backends.blobs import (
    TEMP_SUFFIX,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    validate_path,
    validate_prefix,
)
from backends.errors import InvalidInputError

# Below this size, I/O on the event loop is cheaper than handing it to a thread.
INLINE_MAX_BYTES = 256 * 1024


class LocalBlobStore(BlobStore):
    """Objects as files under ``root``. ``fsync`` makes writes survive a power cut, at a
    price embedded mode rarely needs to pay."""

    def __init__(self, root: Path, *, fsync: bool = False) -> None:
        self.root = Path(root)
        self._fsync = fsync

    @classmethod
    def from_url(cls, url: str, *, fsync: bool = False) -> LocalBlobStore:
        """``file:///abs/dir`` or a plain directory path."""
        parts = urlsplit(url)
        if parts.scheme == "":
            return cls(Path(url), fsync=fsync)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise InvalidInputError(f"not a local directory URL: {url!r}")
        return cls(Path(unquote(parts.path)), fsync=fsync)

    def _file(self, path: str) -> Path:
        return self.root / validate_path(path)

    async def write(self, path: str, data: bytes, *, if_absent: bool = False) -> bool:
        target = self._file(path)
        if len(data) <= INLINE_MAX_BYTES:
            return self._write_sync(path, target, data, if_absent)
        return await asyncio.to_thread(self._write_sync, path, target, data, if_absent)

    def _write_sync(self, path: str, target: Path, data: bytes, if_absent: bool) -> bool:
        if if_absent and target.exists():
            return False
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise InvalidInputError(
                f"cannot write {path!r}: a part of its name is an object", error_class="conflict"
            ) from None
        temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")
        try:
            with open(temp, "wb") as file:
                file.write(data)
                if self._fsync:
                    file.flush()
                    os.fsync(file.fileno())
            if if_absent:
                return self._link_if_absent(temp, target)
            try:
                os.replace(temp, target)
            except IsADirectoryError:
                raise InvalidInputError(
                    f"cannot write {path!r}: objects exist under it", error_class="conflict"
                ) from None
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    @staticmethod
    def _link_if_absent(temp: Path, target: Path) -> bool:
        try:
            os.link(temp, target)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            # No hard links on this filesystem: check, then rename. Racy only between two
            # writers of one name, which write the same bytes under idempotent names.
            if target.exists():
                return False
            os.replace(temp, target)
        return True

    async def read(self, path: str) -> bytes:
        target = self._file(path)
        size = self._size(path, target)
        if size <= INLINE_MAX_BYTES:
            return self._read_sync(path, target)
        return await asyncio.to_thread(self._read_sync, path, target)

    @staticmethod
    def _size(path: str, target: Path) -> int:
        try:
            info = target.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(f"no object {path!r}") from None
        if not stat.S_ISREG(info.st_mode):
            raise BlobNotFound(f"no object {path!r}")
        return info.st_size

    @staticmethod
    def _read_sync(path: str, target: Path) -> bytes:
        try:
            return target.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise BlobNotFound(f"no object {path!r}") from None

    async def iter_chunks(self, path: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        target = self._file(path)
        self._size(path, target)
        try:
            file = await asyncio.to_thread(open, target, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise BlobNotFound(f"no object {path!r}") from None
        try:
            while chunk := await asyncio.to_thread(file.read, chunk_size):
                yield chunk
        finally:
            file.close()

    async def list(self, prefix: str = "") -> builtins.list[BlobInfo]:
        validate_prefix(prefix)
        return await asyncio.to_thread(self._list_sync, prefix)

    def _list_sync(self, prefix: str) -> builtins.list[BlobInfo]:
        # Walk only the directory the prefix names, then match the rest as a string prefix.
        directory = prefix.rpartition("/")[0]
        base = self.root / directory if directory else self.root
        found: builtins.list[BlobInfo] = []
        for dirpath, _dirnames, filenames in os.walk(base):
            relative_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.endswith(TEMP_SUFFIX):
                    continue
                path = name if relative_dir == "." else f"{relative_dir}/{name}"
                if not path.startswith(prefix):
                    continue
                with contextlib.suppress(FileNotFoundError):  # deleted while we walked
                    size = os.stat(os.path.join(dirpath, name)).st_size
                    found.append(BlobInfo(path=path, size_bytes=size))
        found.sort(key=lambda info: info.path)
        return found

    async def exists(self, path: str) -> bool:
        return self._file(path).is_file()

    async def delete(self, path: str) -> None:
        target = self._file(path)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
            target.unlink()
