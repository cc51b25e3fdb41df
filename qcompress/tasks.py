"""Reading task data: TSV files with a header row, one-text-per-line files per class, plain-text
corpora cut into passages, and Hugging Face ``datasets``; seeded subsamples and splits.

Task plugins combine these; the core knows no task by name.
"""

from __future__ import annotations

import csv
import os
import socket
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from qcompress.errors import DataError
from qcompress.interfaces import Split

# Some data sets have texts longer than the csv module's default field limit allows.
csv.field_size_limit(sys.maxsize)


def read_tsv(
    path: Path, text_column: str | int, label_column: str | int, classes: int | None = None
) -> Split:
    """A TSV file (as the GLUE benchmark distributes them): a header row when columns are
    named, no quoting. With ``classes``, every label must be in ``0..classes-1``."""
    if not path.is_file():
        raise DataError(f"missing data file {path}")
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error})") from None
    has_header = isinstance(text_column, str) or isinstance(label_column, str)
    if has_header and not rows:
        raise DataError(f"{path}: empty file; expected a header row")
    if has_header:
        header, rows = rows[0], rows[1:]
        try:
            text_index = header.index(text_column) if isinstance(text_column, str) else text_column
            label_index = (
                header.index(label_column) if isinstance(label_column, str) else label_column
            )
        except ValueError:
            raise DataError(
                f"{path}: expected columns {text_column!r} and {label_column!r}, found {header}"
            ) from None
    else:
        assert isinstance(text_column, int) and isinstance(label_column, int)
        text_index, label_index = text_column, label_column
    texts, labels = [], []
    for number, row in enumerate(rows, start=2 if has_header else 1):
        if not any(field.strip() for field in row):
            continue  # blank lines (e.g. a trailing one)
        try:
            text, label = row[text_index].strip(), int(row[label_index])
        except (IndexError, ValueError):
            raise DataError(
                f"{path}:{number}: malformed row {excerpt(row)}; expected a text in column "
                f"{text_column!r} and an integer label in column {label_column!r}"
            ) from None
        if classes is not None and not 0 <= label < classes:
            raise DataError(
                f"{path}:{number}: label {label} is not one of the task's classes "
                f"0..{classes - 1} (row {excerpt(row)})"
            )
        texts.append(text)
        labels.append(label)
    return Split(texts, torch.tensor(labels, dtype=torch.long))


def read_text_per_class(files: Sequence[Path]) -> Split:
    """One file per class (label = position in ``files``), one text per non-empty line."""
    texts: list[str] = []
    labels: list[int] = []
    for label, path in enumerate(files):
        if not path.is_file():
            raise DataError(f"missing data file {path}")
        try:
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        except UnicodeDecodeError as error:
            raise DataError(f"{path}: not UTF-8 text ({error})") from None
        kept = [line for line in lines if line]
        texts.extend(kept)
        labels.extend([label] * len(kept))
    return Split(texts, torch.tensor(labels, dtype=torch.long))


def load_hf_split(
    path: str, config: str | None, split: str, text_column: str, label_column: str
) -> Split:
    """One split of a Hugging Face dataset (a hub id, or a local folder of data files)."""
    if not Path(path).is_dir():
        unreachable = hub_unreachable()
        if unreachable:  # datasets would retry for half a minute before saying so
            raise DataError(f"cannot load dataset {path!r} from the hub: {unreachable}")
    import datasets

    try:
        dataset = datasets.load_dataset(path, config, split=split)
    except Exception as error:  # hub unreachable, unknown dataset, missing split...
        raise DataError(
            f"cannot load split {split!r} of dataset {path!r}"
            f"{f' ({config})' if config else ''}: {type(error).__name__}: {error}"
        ) from None
    missing = {text_column, label_column} - set(dataset.column_names)
    if missing:
        raise DataError(
            f"dataset {path!r} split {split!r} has no column(s) {sorted(missing)}; "
            f"it has {dataset.column_names}"
        )
    return Split(
        [str(text).strip() for text in dataset[text_column]],
        torch.tensor(dataset[label_column], dtype=torch.long),
    )


def excerpt(value: Any, limit: int = 120) -> str:
    """``repr(value)``, cut to ``limit`` characters (a malformed row can be megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def hub_unreachable(timeout_s: float = 3.0) -> str | None:
    """Why the Hugging Face hub cannot be reached now (offline mode set, or no connection
    within ``timeout_s``), or ``None`` when it can."""
    for variable in OFFLINE_VARIABLES:
        if os.environ.get(variable, "").lower() in ("1", "true", "yes", "on"):
            return f"offline mode is set ({variable})"
    from huggingface_hub import constants

    endpoint = urllib.parse.urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "", port), timeout=timeout_s):
            return None
    except OSError as error:
        return f"{endpoint.hostname} is not reachable ({error.strerror or error})"


def subsample(split: Split, size: int | None, seed: int) -> Split:
    """A seeded random subsample of ``size`` rows (the whole split if ``size`` is None or too
    large); the same seed always gives the same rows."""
    if size is None or size >= len(split):
        return split
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(split), generator=generator)[:size].sort().values
    return take(split, rows.tolist())


def take(split: Split, rows: Sequence[int]) -> Split:
    labels = None if split.labels is None else split.labels[list(rows)]
    return Split([split.texts[row] for row in rows], labels)


def stratified_split(split: Split, fractions: Sequence[float], seed: int) -> list[Split]:
    """Cut ``split`` into parts of the given fractions, each with the class balance of the whole.

    The rows of every class are shuffled with ``seed`` and dealt out in proportion; the result
    is the same for the same data and seed."""
    if abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must add up to 1, got {list(fractions)}")
    generator = torch.Generator().manual_seed(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    labels = _labels(split)
    for label in labels.unique().tolist():
        rows = (labels == label).nonzero().flatten()
        rows = rows[torch.randperm(len(rows), generator=generator)].tolist()
        bounds = [round(len(rows) * sum(fractions[: k + 1])) for k in range(len(fractions))]
        start = 0
        for part, end in zip(parts, bounds, strict=True):
            part.extend(rows[start:end])
            start = end
    return [take(split, sorted(part)) for part in parts]


def _labels(split: Split) -> torch.Tensor:
    if split.labels is None:
        raise DataError("this needs labelled texts; the split has none (language modelling?)")
    return split.labels


def describe_split(split: Split, label_names: Sequence[str]) -> dict[str, Any]:
    labels = _labels(split)
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < len(label_names):
        raise DataError(
            f"labels {int(labels.min())}..{int(labels.max())} are not all among the "
            f"{len(label_names)} classes {list(label_names)}"
        )
    counts = torch.bincount(labels, minlength=len(label_names)).tolist()
    return {"rows": len(split), "per_class": dict(zip(label_names, counts, strict=True))}


def passages(text: str, max_chars: int) -> list[str]:
    """Cut a plain-text corpus into passages of whole lines, each at most ``max_chars`` long:
    blank lines end a passage; a line longer than ``max_chars`` is cut between words (a word
    longer than that, inside it)."""
    found: list[str] = []
    current: list[str] = []
    size = 0

    def flush() -> None:
        nonlocal current, size
        if current:
            found.append("\n".join(current))
        current, size = [], 0

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            flush()
            continue
        for piece in _cut_line(line, max_chars):
            if current and size + 1 + len(piece) > max_chars:
                flush()
            current.append(piece)
            size += len(piece) + (1 if size else 0)
    flush()
    return found


def _cut_line(line: str, max_chars: int) -> list[str]:
    pieces: list[str] = []
    current = ""
    for word in line.split(" "):
        while len(word) > max_chars:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:max_chars])
            word = word[max_chars:]
        candidate = f"{current} {word}" if current else word
        if len(candidate) > max_chars:
            pieces.append(current)
            candidate = word
        current = candidate
    if current:
        pieces.append(current)
    return pieces
