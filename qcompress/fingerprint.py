"""Stable content hashes, the keys of the cache and the identities written into records."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any


def fingerprint_of(*parts: Any) -> str:
    """A short, stable hash of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def fingerprint_path(path: str | Path, exclude: tuple[str, ...] = ()) -> str:
    """Hash of a file's or a directory's contents (names and bytes, not times); ``exclude``
    names files directly inside the directory to leave out."""
    path = Path(path)
    files = (
        sorted(
            p for p in path.rglob("*")
            if p.is_file() and str(p.relative_to(path)) not in exclude
        )
        if path.is_dir()
        else [path]
    )
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(_file_digest(file, file.stat().st_size, file.stat().st_mtime_ns).encode())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=256)
def _file_digest(file: Path, size: int, mtime_ns: int) -> str:
    # size and mtime are part of the memo key only: a changed file is hashed again.
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
