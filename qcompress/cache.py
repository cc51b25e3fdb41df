"""A content-addressed disk cache for what is expensive and deterministic: teacher outputs,
frozen-encoder features, fine-tuned teachers.

An entry's key is a hash of everything it depends on (``parts``: fingerprints of the model, the
data and the tokenisation). Entries are written atomically, so an interrupted run never leaves a
half entry behind, and a JSON sidecar says what each entry is.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from qcompress.fingerprint import fingerprint_of

CACHE_DIR_ENV = "QCOMPRESS_CACHE_DIR"
# Part of every key. The parts name the inputs (weights, data, settings), not the code that
# turns them into an entry: bump this when a change to that code (fine-tuning, encoding,
# pooling, scoring) changes what it produces, so that no entry of the old code is reused.
CACHE_VERSION = 1


def cache_key(kind: str, parts: dict[str, Any]) -> str:
    """The name of the entry of ``kind`` for ``parts`` (under this code's cache version)."""
    return fingerprint_of(kind, parts, CACHE_VERSION)


def default_cache_dir() -> Path:
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "qcompress"


class Cache:
    """Tensors and directories stored under ``root/<kind>/<key>``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.events: list[tuple[str, str, bool]] = []  # (kind, key, hit) in order

    def tensors(
        self,
        kind: str,
        parts: dict[str, Any],
        compute: Callable[[], dict[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        """The tensors cached for ``parts``, computing and storing them on a miss."""
        key = cache_key(kind, parts)
        path = self.root / kind / f"{key}.pt"
        if path.exists():
            self.events.append((kind, key, True))
            return torch.load(path, weights_only=True)
        value = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
            try:
                torch.save(value, handle)
            except BaseException:
                Path(handle.name).unlink(missing_ok=True)
                raise
        os.replace(handle.name, path)
        _write_json(path.with_suffix(".json"), {"kind": kind, "parts": parts})
        self.events.append((kind, key, False))
        return value

    def directory(self, kind: str, parts: dict[str, Any], build: Callable[[Path], None]) -> Path:
        """A directory cached for ``parts``: ``build(tmp_dir)`` fills it on a miss."""
        key = cache_key(kind, parts)
        final = self.root / kind / key
        if (final / "qcompress-cache.json").exists():
            self.events.append((kind, key, True))
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key}-"))
        try:
            build(staging)
            _write_json(staging / "qcompress-cache.json", {"kind": kind, "parts": parts})
            if final.exists():  # an incomplete leftover of an interrupted build
                shutil.rmtree(final)
            os.replace(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.events.append((kind, key, False))
        return final


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")
