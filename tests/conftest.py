"""Shared fixtures: a tiny BERT built from a config (no downloads), a tiny separable GLUE-style
SST-2 folder, a per-test cache directory and a fresh plugin registry for every test.

Nothing here reaches the network: the Hugging Face libraries are put in offline mode before any
test imports them, and every model or data set a test uses is written by a fixture.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

# Before transformers / datasets / huggingface_hub are imported anywhere: they read these once.
for _variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_variable] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
POSITIVE_WORDS = [
    "great", "wonderful", "excellent", "brilliant", "superb",
    "delightful", "charming", "moving", "beautiful", "joyful",
]  # fmt: skip
NEGATIVE_WORDS = [
    "awful", "terrible", "boring", "dull", "horrible",
    "tedious", "bland", "clumsy", "painful", "ugly",
]  # fmt: skip
SUBJECTS = ["film", "movie", "story", "plot", "acting", "script", "cast", "ending"]
ADVERBS = ["truly", "really", "very", "quite", "simply", "utterly"]
FILLER = ["the", "was", "and", "is", "a", "."]
TRAIN_ROWS = 120
DEV_ROWS = 40


def tiny_vocabulary() -> list[str]:
    """Every token of the tiny data set, after the BERT special tokens (ids 0-4)."""
    words = FILLER + SUBJECTS + ADVERBS + POSITIVE_WORDS + NEGATIVE_WORDS
    return SPECIAL_TOKENS + sorted(set(words))


def tiny_sentiment_rows(count: int, seed: int) -> list[tuple[str, int]]:
    """``count`` (sentence, label) rows, half positive (1) and half negative (0), alternating.

    A positive sentence uses only positive adjectives and a negative one only negative ones,
    so the classes are separable by vocabulary alone."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        label = index % 2
        adjectives = POSITIVE_WORDS if label == 1 else NEGATIVE_WORDS
        first, second = rng.sample(adjectives, 2)
        subject, adverb = rng.choice(SUBJECTS), rng.choice(ADVERBS)
        rows.append((f"the {subject} was {adverb} {first} and {second} .", label))
    return rows


def write_sst2_tsv(path: Path, rows: list[tuple[str, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["sentence\tlabel", *(f"{text}\t{label}" for text, label in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-32 BERT sequence classifier (2 labels) with its WordPiece tokenizer,
    saved with ``save_pretrained``: loadable by ``AutoModel*`` and ``AutoTokenizer``."""
    import torch
    import transformers
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    root = tmp_path_factory.mktemp("tiny_bert")
    vocab_dir = root / "vocab"
    vocab_dir.mkdir()
    vocabulary = tiny_vocabulary()
    (vocab_dir / "vocab.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast.from_pretrained(str(vocab_dir), do_lower_case=True)
    # The tokenizer really uses the vocabulary (an empty one would map everything to [UNK]).
    assert tokenizer.unk_token_id not in tokenizer("the film was great")["input_ids"]

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocabulary),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=2,
    )
    model = BertForSequenceClassification(config)
    model_dir = root / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


@pytest.fixture(scope="session")
def tiny_glue_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding ``glue/sst2/train.tsv`` (120 rows) and ``dev.tsv`` (40 rows),
    balanced and separable, the same on every run."""
    root = tmp_path_factory.mktemp("tiny_glue")
    folder = root / "glue" / "sst2"
    write_sst2_tsv(folder / "train.tsv", tiny_sentiment_rows(TRAIN_ROWS, seed=1))
    write_sst2_tsv(folder / "dev.tsv", tiny_sentiment_rows(DEV_ROWS, seed=2))
    return root


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """The models here are tiny: with several intra-op threads, thread start-up and contention
    (e.g. with another process on a 2-core machine) cost 100x the arithmetic."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _isolated_cache_and_registry(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
):
    """Every test gets an empty qcompress cache and loads the plugins afresh."""
    from qcompress.plugins import reset_registry

    monkeypatch.setenv("QCOMPRESS_CACHE_DIR", str(tmp_path_factory.mktemp("qcompress_cache")))
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def hf_datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``datasets``' cache at a per-test folder (it would write to ~/.cache otherwise)."""
    import datasets

    cache = tmp_path / "hf_datasets_cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    return cache


@pytest.fixture
def data_dir() -> Path:
    """The shared data directory (GLUE, QD-LLM sets); the test is skipped without it."""
    configured = os.environ.get("QCOMPRESS_DATA_DIR")
    if not configured:
        pytest.skip("QCOMPRESS_DATA_DIR not set: the shared GLUE/QD-LLM data is needed")
    return Path(configured)


def tiny_story_lines(count: int, seed: int) -> list[str]:
    """Short, regular sentences (a language model can learn their pattern in a few epochs)."""
    return [text for text, _ in tiny_sentiment_rows(count, seed)]


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, width-32 GPT-2 causal LM with a word-level tokenizer over the tiny data's
    vocabulary (GPT-2's own needs files from the hub), saved with ``save_pretrained``."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    transformers.logging.set_verbosity_error()
    words = sorted({word for line in tiny_story_lines(200, 0) for word in line.split()})
    vocabulary = {token: index for index, token in enumerate(["<unk>", "<eos>", *words])}
    backend = Tokenizer(models.WordLevel(vocabulary, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>", bos_token="<eos>"
    )
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(vocabulary), n_positions=64, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=1, eos_token_id=1,
    )  # fmt: skip
    model_dir = tmp_path_factory.mktemp("tiny_gpt2") / "model"
    GPT2LMHeadModel(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


@pytest.fixture(scope="session")
def tiny_text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding ``text/tiny.txt``: 160 regular sentences, one per line."""
    root = tmp_path_factory.mktemp("tiny_text")
    (root / "text").mkdir()
    (root / "text" / "tiny.txt").write_text("\n".join(tiny_story_lines(160, 3)) + "\n")
    return root


CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} <|end|> "
    "{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def tiny_decoder_dir(root: Path, architecture: str) -> Path:
    """A 2-layer, width-32 decoder LLM (``llama`` or ``gemma3``) with a word-level tokenizer
    over the tiny data's vocabulary and a chat template, saved with ``save_pretrained``. Its
    tokenizer has no padding token, as most decoder LLMs' do not."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    specials = ["<unk>", "<bos>", "<eos>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    words = sorted(set(tiny_vocabulary()[len(SPECIAL_TOKENS):]) | {
        "Answer:", "Is", "text", "above", "negative", "or", "positive?", "positive", "with",
        "one", "word.", "N/A", "[MASK]", "Negative", "Positive", "\n", "\n\n",
    })  # fmt: skip
    vocabulary = {token: index for index, token in enumerate([*specials, *words])}
    backend = Tokenizer(models.WordLevel(vocabulary, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>", bos_token="<bos>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    sizes = dict(
        vocab_size=len(vocabulary), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=1, eos_token_id=2, pad_token_id=None,
    )  # fmt: skip
    if architecture == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        model = LlamaForCausalLM(LlamaConfig(**sizes))
    else:
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig

        model = Gemma3ForCausalLM(Gemma3TextConfig(**sizes, head_dim=8, sliding_window=16))
    model_dir = root / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_decoder_dir(tmp_path_factory.mktemp("tiny_llama"), "llama")


@pytest.fixture(scope="session")
def tiny_gemma3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_decoder_dir(tmp_path_factory.mktemp("tiny_gemma3"), "gemma3")
