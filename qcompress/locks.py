"""One writer per results folder, and sweeping what killed runs left behind.

Two ``qcompress bench`` processes on one results folder would compute every cell twice (each
sees the same cells missing). The first holds an exclusive lock on the folder; the second says
so and waits, then reuses the first one's records. The lock is ``flock`` on a file in the
folder: the operating system releases it when its process ends, however it ends.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = ".qcompress.lock"


@contextmanager
def folder_lock(folder: Path, announce: Callable[[str], None]) -> Iterator[None]:
    """Hold the folder's lock for the block; wait (saying so) while another process has it."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            announce(
                f"{folder} is in use by another qcompress run ({holder}); waiting for it to "
                "finish, then its records are reused"
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sweep(folder: Path, patterns: tuple[str, ...], older_than_s: float = 0.0) -> list[Path]:
    """Delete files and folders directly under ``folder`` (and one level down) that match
    ``patterns`` and were last changed more than ``older_than_s`` ago; what was deleted."""
    if not folder.is_dir():
        return []
    now = time.time()
    found: list[Path] = []
    for pattern in patterns:
        found += [*folder.glob(pattern), *folder.glob(f"*/{pattern}")]
    removed = []
    for path in found:
        try:
            if now - path.stat().st_mtime < older_than_s:
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:
            continue  # gone already, or not ours to delete
    return removed
