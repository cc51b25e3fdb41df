"""A content-addressed disk cache for what is expensive and deterministic: teacher outputs,
frozen-encoder features, fine-tuned teachers.

An entry's key is a hash of everything it depends on (``parts``: fingerprints of the model, the
data and the tokenisation). Entries are written atomically, so an interrupted run never leaves a
half entry behind, and a JSON sidecar says what each entry is and holds its checksum.

Every entry is verified when it is read: one whose bytes no longer match its checksum (a flipped
bit, a truncated file, a missing sidecar) is named, deleted and rebuilt, never used. Concurrent
writers of one key agree: a finished entry is never deleted by a writer; the first to finish
wins and the others use its entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from qcompress.fingerprint import fingerprint_of, fingerprint_path

CACHE_DIR_ENV = "QCOMPRESS_CACHE_DIR"
# Part of every key. The parts name the inputs (weights, data, settings), not the code that
# turns them into an entry: bump this when a change to that code (fine-tuning, encoding,
# pooling, scoring) changes what it produces, so that no entry of the old code is reused.
CACHE_VERSION = 2  # 2: teachers fine-tune from their own seed (a cold GGUF load had moved it)
MARKER = "qcompress-cache.json"  # a directory entry's sidecar, written last
DIGESTS = "digests"  # remembered digests of large files (see fingerprint_path)


def cache_key(kind: str, parts: dict[str, Any]) -> str:
    """The name of the entry of ``kind`` for ``parts`` (under this code's cache version)."""
    return fingerprint_of(kind, parts, CACHE_VERSION)


def default_cache_dir() -> Path:
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "qcompress"


def _warn_on_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class Cache:
    """Tensors and directories stored under ``root/<kind>/<key>``. ``on_problem`` is told of
    every entry found damaged (and rebuilt)."""

    def __init__(self, root: Path, on_problem: Callable[[str], None] = _warn_on_stderr) -> None:
        self.root = Path(root)
        self.on_problem = on_problem
        self.events: list[tuple[str, str, bool]] = []  # (kind, key, hit) in order

    # -- tensors --------------------------------------------------------------------------

    def tensors(
        self,
        kind: str,
        parts: dict[str, Any],
        compute: Callable[[], dict[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        """The tensors cached for ``parts``, computing and storing them on a miss."""
        key = cache_key(kind, parts)
        path = self.root / kind / f"{key}.pt"
        if path.exists() or path.with_suffix(".json").exists():
            value = self._read_tensors(path)
            if value is not None:
                self.events.append((kind, key, True))
                return value
        value = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
            try:
                torch.save(value, handle)
            except BaseException:
                Path(handle.name).unlink(missing_ok=True)
                raise
        checksum = _sha256(Path(handle.name))
        os.replace(handle.name, path)
        _write_json(path.with_suffix(".json"), {"kind": kind, "parts": parts, "sha256": checksum})
        self.events.append((kind, key, False))
        return value

    def _read_tensors(self, path: Path) -> dict[str, torch.Tensor] | None:
        """The entry at ``path`` if it is whole; otherwise it is reported and deleted."""
        sidecar = path.with_suffix(".json")
        try:
            expected = json.loads(sidecar.read_text()).get("sha256")
        except (OSError, ValueError, AttributeError):
            expected = None
        problem = None
        if expected is None:
            problem = "its sidecar (with the checksum) is missing or unreadable"
        elif not path.exists():
            problem = "its data file is missing"
        elif _sha256(path) != expected:
            problem = "its bytes do not match the checksum (damaged or truncated)"
        else:
            try:
                return torch.load(path, weights_only=True)
            except Exception as error:  # the bytes are as written, yet unreadable
                problem = f"it cannot be loaded ({type(error).__name__}: {error})"
        self.on_problem(f"cache entry {path}: {problem}; deleted, computing it again")
        path.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
        return None

    def fingerprint_path(self, path: str | Path, exclude: tuple[str, ...] = ()) -> str:
        """:func:`~qcompress.fingerprint.fingerprint_path`, remembering the digests of large
        files under ``digests/`` (so a warm run does not hash an LLM's weights again)."""
        return fingerprint_path(path, exclude, memo=self.root / DIGESTS)

    # -- directories ----------------------------------------------------------------------

    def directory(self, kind: str, parts: dict[str, Any], build: Callable[[Path], None]) -> Path:
        """A directory cached for ``parts``: ``build(tmp_dir)`` fills it on a miss."""
        key = cache_key(kind, parts)
        final = self.root / kind / key
        if final.exists() and self._directory_is_whole(final):
            self.events.append((kind, key, True))
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key}-"))
        try:
            build(staging)
            marker = {"kind": kind, "parts": parts, "contents": self.fingerprint_path(staging)}
            _write_json(staging / MARKER, marker)
            self._commit(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.events.append((kind, key, False))
        return final

    def _commit(self, staging: Path, final: Path) -> None:
        """Rename ``staging`` to ``final``. If another writer got there first with a whole
        entry, theirs stands (ours is dropped); a damaged one is set aside first."""
        for _ in range(3):
            try:
                os.replace(staging, final)
                return
            except OSError:  # final exists and is not empty
                if self._directory_is_whole(final, report=False):
                    return
                self._set_aside(final)
        os.replace(staging, final)

    def _directory_is_whole(self, final: Path, report: bool = True) -> bool:
        try:
            marker = json.loads((final / MARKER).read_text())
            recorded = marker["contents"]
        except (OSError, ValueError, KeyError, TypeError):
            recorded = None
        if recorded is not None:
            without_marker = self.fingerprint_path(final, exclude=(MARKER,))
            if without_marker == recorded:
                return True
        if report:
            why = "its marker is missing" if recorded is None else "its files changed"
            self.on_problem(f"cache entry {final}: {why}; deleted, building it again")
            self._set_aside(final)
        return False

    @staticmethod
    def _set_aside(final: Path) -> None:
        """Move a damaged entry out of the way (atomically) and delete it."""
        trash = final.with_name(f".{final.name}-damaged-{os.getpid()}")
        try:
            os.replace(final, trash)
        except OSError:
            return  # already gone (another process set it aside)
        shutil.rmtree(trash, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, value: Any) -> None:
    """Atomically: a reader sees the whole sidecar or none."""
    text = json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as handle:
        handle.write(text)
    os.replace(handle.name, path)
