"""Where rendered PDFs are kept. An interface, so object storage can replace the filesystem."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Protocol


class Storage(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, data: bytes) -> None: ...

    def size(self, key: str) -> int | None: ...

    def open(self, key: str) -> BinaryIO | None: ...


class FileStorage:
    """Content-addressed files under one folder (var/documents/ by default)."""

    def __init__(self, root: Path):
        self.root = root

    def _path(self, key: str) -> Path:
        if not key.isalnum():
            raise ValueError("storage keys are hex digests")
        return self.root / key[:2] / f"{key}.pdf"

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def size(self, key: str) -> int | None:
        """The stored file's size, or None when it is not stored: whether it is there, without reading it."""
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def open(self, key: str) -> BinaryIO | None:
        """The stored file, open for reading (to stream it), or None."""
        try:
            return self._path(key).open("rb")
        except FileNotFoundError:
            return None

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: a reader never sees half a file
