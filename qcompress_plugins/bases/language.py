"""Causal language models from Hugging Face, as the first-party plugins use them: loading one by
hub id or path, cutting texts into padded batches whose padding is masked out of the loss
(label -100), and scoring texts token by token.

Perplexity is the standard one: ``exp(total NLL / total predicted tokens)`` over the whole
evaluation split, each text scored on its own (its first token has no context and is not
predicted), padding never counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from qcompress.errors import QcompressError
from qcompress.interfaces import TokenLosses
from qcompress.models import pad_with_eos
from qcompress.training import length_buckets

IGNORE_INDEX = -100  # what Hugging Face losses skip


def load_causal_lm(source: str, role: str) -> tuple[torch.nn.Module, Any]:
    """``AutoModelForCausalLM`` and its tokenizer from a hub id or a local folder. A tokenizer
    without a padding token (GPT-2) pads with its end-of-text token; padding goes right."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source)
    except OSError as error:
        raise QcompressError(
            f"cannot load the {role}'s causal language model {source!r}: neither a local folder "
            "of that name nor reachable on the Hugging Face hub (offline?). Give the path of a "
            f"folder saved with save_pretrained, or run where the hub is reachable. ({error})"
        ) from None
    pad_with_eos(tokenizer)
    tokenizer.padding_side = "right"
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def lm_batch(
    tokenizer: Any, texts: Sequence[str], max_length: int, device: torch.device
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Tokens of ``texts`` (right-padded, cut at ``max_length``) and their labels: the token
    ids, with -100 on padding so that no loss is computed there."""
    tokens = tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    ).to(device)
    labels = tokens["input_ids"].masked_fill(tokens["attention_mask"] == 0, IGNORE_INDEX)
    return dict(tokens), labels


def shifted_token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[B, T-1]`` NLL of each next token (0 where the label is -100)."""
    return F.cross_entropy(
        logits[:, :-1].transpose(1, 2).float(),
        labels[:, 1:],
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )


@torch.inference_mode()
def token_losses(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    batch_size: int,
    max_length: int,
    device: torch.device,
) -> TokenLosses:
    """Summed next-token NLL and predicted-token count of every text."""
    nll = torch.zeros(len(texts), dtype=torch.float64)
    counts = torch.zeros(len(texts), dtype=torch.long)
    model.eval()
    for rows in length_buckets(texts, batch_size):
        tokens, labels = lm_batch(tokenizer, [texts[row] for row in rows], max_length, device)
        losses = shifted_token_nll(model(**tokens).logits, labels)
        nll[rows] = losses.sum(dim=1).double().cpu()
        counts[rows] = (labels[:, 1:] != IGNORE_INDEX).sum(dim=1).cpu()
    return TokenLosses(nll, counts)


@torch.inference_mode()
def next_token_logits(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    device: torch.device,
) -> torch.Tensor:
    """``[B, V]``: the logits of the token that would follow each text (its last real
    position), what generation would sample from."""
    tokens, _ = lm_batch(tokenizer, texts, max_length, device)
    return last_token_logits(model, tokens).cpu()


def last_token_logits(model: Any, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[B, V]`` float logits after each right-padded sequence's last real token.

    The output layer runs on those B positions only: the full ``[B, T, V]`` logits of an LLM
    with a 262k-token vocabulary (Gemma 3) would take gigabytes for one batch."""
    # Under peft the LoRA layers sit inside the decoder and the output layer, so calling
    # them directly keeps the adapter.
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = inner.get_decoder()(**tokens).last_hidden_state
    last = tokens["attention_mask"].sum(dim=1) - 1
    picked = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    logits = inner.get_output_embeddings()(picked).float()
    cap = getattr(inner.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits
