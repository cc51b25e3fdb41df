"""Stable content hashes, the keys of the cache and the identities written into records."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any


def fingerprint_of(*parts: Any) -> str:
    """A short, stable hash of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# Files at least this large have their digest remembered on disk (a memo folder given by the
# cache): hashing a 1 GB float copy of an LLM took seconds of every warm load.
MEMO_MIN_BYTES = 1 << 20


def fingerprint_path(
    path: str | Path, exclude: tuple[str, ...] = (), memo: Path | None = None
) -> str:
    """Hash of a file's or a directory's contents (names and bytes, not times); ``exclude``
    names files directly inside the directory to leave out. With ``memo`` (a folder), the
    digests of large files are remembered there across processes, keyed by the file's path,
    size, inode and modification and change times: any write changes the change time, so a
    changed file is hashed again."""
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
        digest.update(_remembered_digest(file, memo).encode())
    return digest.hexdigest()[:16]


def _remembered_digest(file: Path, memo: Path | None) -> str:
    stat = file.stat()
    identity = [stat.st_size, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns]
    if memo is None or stat.st_size < MEMO_MIN_BYTES:
        return _file_digest(file, *identity)
    entry = memo / f"{hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:32]}.json"
    try:
        remembered = json.loads(entry.read_text())
        if remembered["stat"] == identity:
            return str(remembered["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = _file_digest(file, *identity)
    try:  # a memo that cannot be written only costs the hashing next time
        memo.mkdir(parents=True, exist_ok=True)
        temporary = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
        remembered = {"file": str(file), "stat": identity, "sha256": digest}
        temporary.write_text(json.dumps(remembered))
        os.replace(temporary, entry)
    except OSError:
        pass
    return digest


@functools.lru_cache(maxsize=256)
def _file_digest(file: Path, size: int, inode: int, mtime_ns: int, ctime_ns: int) -> str:
    # The stat figures are part of the memo key only: a changed file is hashed again.
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
