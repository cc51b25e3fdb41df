"""Causal language models answering prompts, as the first-party generation plugins use them:
prompting through the model's chat template (an instruct model is asked as its users ask it,
system prompt and all), greedy decoding in left-padded batches, and the training batches of
sequence-level distillation (a prompt and the teacher's response; the loss on the response's
tokens only)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from qcompress.interfaces import GenerationSettings
from qcompress.training import length_buckets
from qcompress_plugins.bases.language import IGNORE_INDEX


def templated(tokenizer: Any, settings: GenerationSettings) -> bool:
    return settings.chat_template == "auto" and bool(getattr(tokenizer, "chat_template", None))


def prompt_text(tokenizer: Any, prompt: str, settings: GenerationSettings) -> str:
    """The text a model reads for ``prompt``: its chat template's user turn and the opening
    of the assistant's (where it has a template and ``settings`` allow it), else the prompt."""
    if not templated(tokenizer, settings):
        return prompt
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )


def _encode(
    tokenizer: Any, texts: list[str], settings: GenerationSettings, **options: Any
) -> dict[str, torch.Tensor]:
    # A chat template writes its own special tokens; a raw prompt gets the tokenizer's.
    return tokenizer(
        texts, add_special_tokens=not templated(tokenizer, settings), return_tensors="pt",
        padding=True, **options,
    )  # fmt: skip


@torch.inference_mode()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    batch_size: int,
    settings: GenerationSettings,
    device: torch.device,
) -> tuple[list[str], list[int]]:
    """Greedy responses to ``prompts`` (in order) and the tokens each took (up to, not
    counting, the end-of-sequence token)."""
    texts = [prompt_text(tokenizer, prompt, settings) for prompt in prompts]
    responses: list[str] = [""] * len(texts)
    counts: list[int] = [0] * len(texts)
    stop = tokenizer.eos_token_id
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues every row from its last token
    try:
        for rows in length_buckets(texts, batch_size):
            batch = _encode(tokenizer, [texts[row] for row in rows], settings).to(device)
            with warnings.catch_warnings():  # sampling settings of a shipped generation config
                warnings.simplefilter("ignore", UserWarning)
                output = model.generate(
                    **batch, max_new_tokens=settings.max_new_tokens, do_sample=False,
                    num_beams=1, temperature=None, top_p=None, top_k=None,
                    pad_token_id=tokenizer.pad_token_id,
                )  # fmt: skip
            new = output[:, batch["input_ids"].shape[1] :].cpu()
            for row, tokens in zip(rows, new, strict=True):
                ends = (tokens == stop).nonzero()
                length = int(ends[0]) if len(ends) else len(tokens)
                counts[row] = length
                responses[row] = tokenizer.decode(tokens[:length], skip_special_tokens=True).strip()
    finally:
        tokenizer.padding_side = side
    return responses, counts


def response_batch(
    tokenizer: Any,
    prompts: Sequence[str],
    responses: Sequence[str],
    max_length: int,
    settings: GenerationSettings,
    device: torch.device,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Tokens of each prompt (as :func:`prompt_text` writes it) followed by its response and
    the end-of-sequence token, right-padded and cut at ``max_length``; labels -100 on the
    prompt and the padding, so that the loss is the response's alone."""
    heads = [prompt_text(tokenizer, prompt, settings) for prompt in prompts]
    eos = tokenizer.eos_token or ""
    full = [head + response + eos for head, response in zip(heads, responses, strict=True)]
    side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    try:
        tokens = _encode(tokenizer, full, settings, truncation=True, max_length=max_length)
    finally:
        tokenizer.padding_side = side
    labels = tokens["input_ids"].clone()
    labels[tokens["attention_mask"] == 0] = IGNORE_INDEX
    for row, length in enumerate(_head_lengths(tokenizer, heads, settings)):
        labels[row, :length] = IGNORE_INDEX
    return tokens.to(device), labels.to(device)


def _head_lengths(tokenizer: Any, heads: list[str], settings: GenerationSettings) -> list[int]:
    encoded = tokenizer(heads, add_special_tokens=not templated(tokenizer, settings))
    return [len(ids) for ids in encoded["input_ids"]]
