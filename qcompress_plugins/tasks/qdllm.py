"""The three QD-LLM tasks (Li et al. 2025; docs/methods.md §1): ``senti`` (tweets, 2 classes),
``stega`` (cover vs stego text, 2 classes) and ``topic`` (news, 4 classes).

Read from ``<data dir>/qdllm/<task>/``, one text per line and one file per class. The authors
released only their training files, so qcompress cuts them into a seeded, stratified
train / validation / test split (80/10/10 by default) and records it in every record: sizes per
class and a fingerprint of each part. Students train on ``train`` (optionally a seeded subsample,
``train_size``) and are scored on ``test``; ``validation`` is held out for tuning and never
scored. Exact duplicate texts are removed before splitting (a text in both train and test would
flatter every model), and texts filed under two classes are dropped; both counts are recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field, field_validator

from qcompress import hookimpl
from qcompress.errors import DataError
from qcompress.interfaces import Split, Task, TaskConfig, TaskData
from qcompress.tasks import describe_split, read_text_per_class, stratified_split, subsample
from qcompress_plugins.kinds import CLASSIFICATION


class QDLLMTaskConfig(TaskConfig):
    path: str | None = Field(
        default=None, description="folder with the per-class files; else <data dir>/qdllm/<task>"
    )
    fractions: tuple[float, float, float] = Field(
        default=(0.8, 0.1, 0.1), description="train, validation and test shares"
    )
    deduplicate: bool = Field(default=True, description="drop repeated and ambiguous texts")

    @field_validator("fractions")
    @classmethod
    def _shares(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(share <= 0 for share in value) or abs(sum(value) - 1) > 1e-6:
            raise ValueError(f"expected three positive shares adding up to 1, got {list(value)}")
        return value


def deduplicate(split: Split) -> tuple[Split, dict[str, int]]:
    """Keep the first occurrence of every text; drop texts filed under two labels."""
    labels_of: dict[str, set[int]] = {}
    for text, label in zip(split.texts, split.labels.tolist(), strict=True):
        labels_of.setdefault(text, set()).add(label)
    ambiguous = {text for text, labels in labels_of.items() if len(labels) > 1}
    seen: set[str] = set()
    texts, labels = [], []
    for text, label in zip(split.texts, split.labels.tolist(), strict=True):
        if text in seen or text in ambiguous:
            continue
        seen.add(text)
        texts.append(text)
        labels.append(label)
    counts = {"rows_read": len(split), "rows_kept": len(texts), "ambiguous_texts": len(ambiguous)}
    return Split(texts, torch.tensor(labels, dtype=torch.long)), counts


class QDLLMTask(Task):
    Config = QDLLMTaskConfig
    kind = CLASSIFICATION
    folder_name: ClassVar[str]
    files: ClassVar[dict[str, str]]  # label name -> file name, in label order

    def load(self, data_dir: Path | None) -> TaskData:
        config: QDLLMTaskConfig = self.config
        folder = self._folder(data_dir)
        labels = list(self.files)
        everything = read_text_per_class([folder / self.files[label] for label in labels])
        cleaning: dict[str, int] = {}
        if config.deduplicate:
            everything, cleaning = deduplicate(everything)
        train, validation, test = stratified_split(everything, config.fractions, config.seed)
        train = subsample(train, config.train_size, config.seed)
        test = subsample(test, config.eval_size, config.seed)
        provenance: dict[str, Any] = {
            "source": str(folder),
            "files": self.files,
            "split": {
                "seed": config.seed,
                "fractions": list(config.fractions),
                "stratified": True,
                "scored_on": "test",
            },
            **({"deduplicated": cleaning} if config.deduplicate else {}),
            "train": {**describe_split(train, labels), "fingerprint": train.fingerprint()},
            "validation": {
                **describe_split(validation, labels),
                "fingerprint": validation.fingerprint(),
            },
            "eval": {**describe_split(test, labels), "fingerprint": test.fingerprint()},
            "subsample_seed": config.seed,
        }
        return TaskData(self.folder_name, labels, train, test, provenance)

    def _folder(self, data_dir: Path | None) -> Path:
        config: QDLLMTaskConfig = self.config
        if config.path:
            return Path(config.path).expanduser()
        if data_dir is None:
            raise DataError(
                f"task {self.folder_name!r} needs the QD-LLM data: set QCOMPRESS_DATA_DIR (or the "
                f"suite's data_dir) to a folder holding qdllm/{self.folder_name}/, or give 'path'"
            )
        return data_dir / "qdllm" / self.folder_name


class Senti(QDLLMTask):
    description = "QD-LLM senti: tweet sentiment (2 classes), seeded 80/10/10 split"
    folder_name = "senti"
    files: ClassVar[dict[str, str]] = {"negative": "train_neg.txt", "positive": "train_pos.txt"}


class Stega(QDLLMTask):
    description = "QD-LLM stega: cover vs steganographic text (2 classes), seeded 80/10/10 split"
    folder_name = "stega"
    files: ClassVar[dict[str, str]] = {"cover": "train_neg.txt", "stego": "train_pos.txt"}


class Topic(QDLLMTask):
    description = "QD-LLM topic: news topics (4 classes), seeded 80/10/10 split"
    folder_name = "topic"
    files: ClassVar[dict[str, str]] = {
        "business": "train_business.txt",
        "sci": "train_sci.txt",
        "sport": "train_sport.txt",
        "world": "train_world.txt",
    }


@hookimpl
def register_tasks(register):
    register("senti", Senti)
    register("stega", Stega)
    register("topic", Topic)
