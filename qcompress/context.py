"""What a plugin gets from the run: the device, the cache, progress bars, cached features."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from qcompress.cache import Cache
from qcompress.errors import QcompressError
from qcompress.features import FrozenEncoder, Pooling
from qcompress.interfaces import Backend, BackendSpec, Split, Teacher
from qcompress.plugins import Registry
from qcompress.progress import ProgressReporter


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


@dataclass
class RunContext:
    cache: Cache
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: ProgressReporter = field(default_factory=ProgressReporter)
    data_dir: Path | None = None
    # Set by the runner: what plugins may build backends from, and the prepared teacher.
    registry: Registry | None = None
    teacher: Teacher | None = None
    _encoders: dict[tuple[str, str, int], FrozenEncoder] = field(default_factory=dict)

    def frozen_encoder(self, name_or_path: str, pooling: Pooling, max_length: int) -> FrozenEncoder:
        """One shared encoder per (model, pooling, length) for the whole run: loaded at most
        once, and only when something must be encoded."""
        key = (str(name_or_path), pooling, max_length)
        if key not in self._encoders:
            self._encoders[key] = FrozenEncoder(name_or_path, pooling, max_length, self.device)
        return self._encoders[key]

    def frozen_features(
        self, encoder: FrozenEncoder, split: Split, batch_size: int = 64
    ) -> torch.Tensor:
        """Pooled encoder features of a split, computed once and cached on disk."""
        parts = {"encoder": encoder.fingerprint(), "split": split.fingerprint()}

        def compute() -> dict[str, torch.Tensor]:
            # Encode in chunks of several batches: long enough to sort by length inside,
            # short enough for the bar to move.
            chunk = batch_size * 8
            with self.progress.task(f"encoding {len(split)} texts", total=len(split)) as advance:
                pieces = []
                for start in range(0, len(split), chunk):
                    texts = split.texts[start : start + chunk]
                    pieces.append(encoder.encode(texts, batch_size))
                    advance(len(texts))
            return {"features": torch.cat(pieces)}

        return self.cache.tensors("features", parts, compute)["features"]

    def backend(self, spec: BackendSpec) -> Backend:
        """The backend a plugin's settings name, built from the registry."""
        if self.registry is None:
            raise QcompressError("this run context has no plugin registry to build backends from")
        backend_cls = self.registry.get("backend", spec.name)
        return backend_cls(backend_cls.Config.model_validate(spec.settings()))

    def teacher_encoder(self) -> str:
        """The prepared teacher's own encoder (a folder or hub id), for students told to use it."""
        source = self.teacher.encoder_source() if self.teacher is not None else None
        if source is None:
            name = type(self.teacher).__name__ if self.teacher is not None else "no teacher"
            raise QcompressError(f"encoder 'teacher': {name} has no encoder a student can reuse")
        return source
