"""The run context (the :class:`~qcompress.interfaces.RunContext` plugins are given): built
once per run, then once more with the prepared teacher, and never changed in between."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from qcompress.errors import QcompressError
from qcompress.interfaces import (
    Backend,
    BackendSpec,
    Encoder,
    RunContext,
    Split,
    TaskData,
    Teacher,
)
from qcompress.models import resolve_model
from qcompress.progress import ProgressReporter

if TYPE_CHECKING:
    from qcompress.cache import Cache
    from qcompress.plugins import Registry


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


@dataclass(frozen=True)
class LocalRunContext(RunContext):
    """The run context of a run in this process."""

    cache: Cache
    # The plugins to build backends and resolve model names from (default: the process's).
    registry: Registry | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: ProgressReporter = field(default_factory=ProgressReporter)
    data_dir: Path | None = None
    teacher: Teacher | None = None
    task: TaskData | None = None
    # Encoders loaded so far, shared by the contexts of one run (a memo, not run state).
    _encoders: dict[tuple[str, str, int], Encoder] = field(default_factory=dict, repr=False)

    def with_teacher(self, teacher: Teacher, task: TaskData | None = None) -> LocalRunContext:
        """The same context with the prepared teacher and the loaded task (the loaded encoders
        are kept)."""
        return dataclasses.replace(self, teacher=teacher, task=task or self.task)

    def frozen_encoder(self, name_or_path: str, pooling: str, max_length: int) -> Encoder:
        from qcompress.features import FrozenEncoder  # loads transformers: only when needed

        key = (str(name_or_path), pooling, max_length)
        if key not in self._encoders:
            self._encoders[key] = FrozenEncoder(
                name_or_path, pooling, max_length, self.device,  # type: ignore[arg-type]
                cache=self.cache,
            )
        return self._encoders[key]

    def frozen_features(self, encoder: Encoder, split: Split, batch_size: int = 64) -> torch.Tensor:
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
        backend_cls = self.plugins().get("backend", spec.name)
        return backend_cls(backend_cls.Config.model_validate(spec.settings()))

    def resolve_model(self, name_or_path: str) -> str:
        if name_or_path == "teacher":
            source = self.teacher.encoder_source() if self.teacher is not None else None
            if source is None:
                name = type(self.teacher).__name__ if self.teacher is not None else "no teacher"
                raise QcompressError(
                    f"encoder 'teacher': {name} has no encoder a student can reuse"
                )
            return source
        registry = self.plugins()
        registered = {name: registry.get("model", name) for name in registry.names("model")}
        return resolve_model(name_or_path, self.cache, registered)

    def plugins(self) -> Registry:
        from qcompress.plugins import get_registry

        return self.registry if self.registry is not None else get_registry()
