"""Causal language models from Hugging Face, as the first-party plugins use them: loading one by
hub id or path, cutting texts into padded batches whose padding is masked out of the loss
(label -100), and scoring texts token by token.

Perplexity is the standard one: ``exp(total NLL / total predicted tokens)`` over the whole
evaluation split, each text scored on its own (its first token has no context and is not
predicted), padding never counted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from qcompress.errors import QcompressError
from qcompress.interfaces import Column, TokenLosses
from qcompress.models import pad_with_eos
from qcompress.training import length_buckets
from qcompress.values import OVERLAP_K, TopTokens

IGNORE_INDEX = -100  # what Hugging Face losses skip
# Predicted positions whose vocabulary logits are computed at once: an LLM's full [B, T, V]
# logits (Gemma 3: 262k tokens) would take gigabytes a batch.
POSITION_CHUNK = 256
# The least probability the tokens outside a top k are given (log: -27.6 nats).
TAIL_MIN = 1e-12


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


def token_losses(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    batch_size: int,
    max_length: int,
    device: torch.device,
) -> TokenLosses:
    """Summed next-token NLL and predicted-token count of every text."""
    return _scored_tokens(model, tokenizer, texts, batch_size, max_length, device, None)


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
    inner, hidden = _hidden_states(model, tokens)
    last = tokens["attention_mask"].sum(dim=1) - 1
    picked = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    return _output_logits(inner, picked)


def _hidden_states(model: Any, tokens: dict[str, torch.Tensor]) -> tuple[Any, torch.Tensor]:
    """The model without a peft wrapper (its LoRA layers sit inside the decoder and the
    output layer, so calling those directly keeps the adapter) and the decoder's last hidden
    states ``[B, T, H]``."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner, inner.get_decoder()(**tokens).last_hidden_state


def _output_logits(inner: Any, hidden: torch.Tensor) -> torch.Tensor:
    """Float logits of the output layer on ``hidden`` (soft-capped where the model caps)."""
    logits = inner.get_output_embeddings()(hidden).float()
    cap = getattr(inner.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def predicted_positions(labels: torch.Tensor) -> torch.Tensor:
    """``[B, T-1]`` bool: the positions whose next token is a real one (a prediction to score).
    Flattened row by row, they are each text's predicted tokens in order, the order of
    :class:`TopTokens`."""
    return labels[:, 1:] != IGNORE_INDEX


def position_logprobs(
    model: Any, tokens: dict[str, torch.Tensor], positions: torch.Tensor
) -> Iterator[tuple[slice, torch.Tensor]]:
    """The next-token log-probabilities (float32, whole vocabulary) at the ``positions`` of a
    right-padded batch, ``POSITION_CHUNK`` at a time: ``(where, [n, V])`` pairs, ``where``
    slicing the flattened positions. The output layer runs on those positions only."""
    inner, hidden = _hidden_states(model, tokens)
    hidden = hidden[:, :-1][positions]
    for start in range(0, hidden.shape[0], POSITION_CHUNK):
        logits = _output_logits(inner, hidden[start : start + POSITION_CHUNK])
        yield slice(start, start + logits.shape[0]), logits.log_softmax(dim=-1)


def _tail(top_logprobs: torch.Tensor) -> torch.Tensor:
    """log(1 - sum(exp(top))): the log-probability of every token outside the top k, at least
    log(TAIL_MIN) (finite, and with a finite gradient, when the top k hold everything)."""
    covered = top_logprobs.logsumexp(dim=-1)
    return torch.log((1 - covered.exp()).clamp_min(TAIL_MIN))


@torch.inference_mode()
def top_tokens(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    batch_size: int,
    max_length: int,
    device: torch.device,
    k: int,
) -> TopTokens:
    """The ``k`` most likely next tokens (ids and log-probabilities) at every predicted
    position of every text, and the log-probability of the rest."""
    model.eval()
    order: list[int] = []  # the texts in the order the length buckets took them
    counts: list[int] = []
    ids = [torch.empty(0, k, dtype=torch.long)]
    logprobs = [torch.empty(0, k)]
    for rows in length_buckets(texts, batch_size):
        tokens, labels = lm_batch(tokenizer, [texts[row] for row in rows], max_length, device)
        positions = predicted_positions(labels)
        for _, chunk in position_logprobs(model, tokens, positions):
            best = chunk.topk(k, dim=-1)
            ids.append(best.indices.cpu())
            logprobs.append(best.values.cpu())
        order += rows
        counts += positions.sum(dim=1).tolist()
    top = torch.cat(logprobs)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long),
                         torch.tensor(counts, dtype=torch.long).cumsum(0)])  # fmt: skip
    in_buckets = TopTokens(torch.cat(ids), top, _tail(top), offsets)
    place = {text: index for index, text in enumerate(order)}
    return in_buckets.rows([place[text] for text in range(len(texts))])


def aligned(teacher: TopTokens, positions: torch.Tensor) -> TopTokens:
    """The teacher's top tokens at a batch's predicted ``positions`` (``teacher`` holds the
    batch's texts, in order). A student that keeps fewer tokens per text (a shorter
    ``max_length``) is compared on the teacher's first positions; any other difference means
    the texts were tokenized otherwise, which token-level comparison cannot bridge."""
    counts = positions.sum(dim=1).tolist()
    prefix = teacher.first(counts)
    if prefix is None:
        raise QcompressError(
            f"the student cuts these texts into {sum(counts)} predicted tokens where the "
            f"teacher has {teacher.ids.shape[0]}, not a prefix of each: comparing or distilling "
            "token by token needs the teacher's tokenizer and no longer a max_length"
        )
    return prefix


def coarse_logprobs(
    logprobs: torch.Tensor, teacher_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A model's log-probabilities ``[n, V]`` folded onto a teacher's top tokens: ``[n, k]``
    at the teacher's ids and ``[n]`` for all other tokens together."""
    at_ids = logprobs.gather(1, teacher_ids.to(logprobs.device))
    return at_ids, _tail(at_ids)


def kl_from_teacher(
    teacher_top: torch.Tensor,
    teacher_tail: torch.Tensor,
    student_top: torch.Tensor,
    student_tail: torch.Tensor,
) -> torch.Tensor:
    """``[n]`` KL(teacher || student) between the two distributions folded onto the teacher's
    top k tokens and one bucket for the rest (a lower bound of the full KL). With the roles
    swapped it is the reverse KL, KL(student || teacher), on the same buckets."""
    top = (teacher_top.exp() * (teacher_top - student_top)).sum(dim=-1)
    return top + teacher_tail.exp() * (teacher_tail - student_tail)


def token_losses_against(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    batch_size: int,
    max_length: int,
    device: torch.device,
    teacher: TopTokens,
) -> TokenLosses:
    """:func:`token_losses` and, per text, the KL from the teacher, the top-1 agreements and
    the top-``OVERLAP_K`` overlap, over the same predicted tokens. The model must cut the texts
    as the teacher did (the same tokenizer; a shorter ``max_length`` is compared on the
    teacher's first positions)."""
    if len(teacher) != len(texts):
        raise QcompressError(
            f"the teacher's top tokens cover {len(teacher)} texts, not {len(texts)}"
        )
    return _scored_tokens(model, tokenizer, texts, batch_size, max_length, device, teacher)


@torch.inference_mode()
def _scored_tokens(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    batch_size: int,
    max_length: int,
    device: torch.device,
    teacher: TopTokens | None,
) -> TokenLosses:
    """Per text, summed over its predicted tokens: the NLL, and against ``teacher`` the KL,
    top-1 agreements and top-k overlap. Vocabulary logits are computed a chunk of positions
    at a time (see :func:`position_logprobs`)."""
    names = ("nll",) if teacher is None else ("nll", "kl", "top1", "overlap")
    sums = {name: torch.zeros(len(texts), dtype=torch.float64) for name in names}
    counts = torch.zeros(len(texts), dtype=torch.long)
    model.eval()
    for rows in length_buckets(texts, batch_size):
        tokens, labels = lm_batch(tokenizer, [texts[row] for row in rows], max_length, device)
        positions = predicted_positions(labels)
        wanted = None if teacher is None else aligned(teacher.rows(rows), positions)
        targets = labels[:, 1:][positions]
        per_position = {name: torch.empty(int(positions.sum()), dtype=torch.float64)
                        for name in names}  # fmt: skip
        for where, chunk in position_logprobs(model, tokens, positions):
            nll = -chunk.gather(1, targets[where].unsqueeze(1)).squeeze(1)
            per_position["nll"][where] = nll.double().cpu()
            if wanted is not None:
                for name, values in _against(chunk, wanted, where).items():
                    per_position[name][where] = values.double().cpu()
        # Each position's text (rows of the batch, in the flattened order of ``positions``).
        batch_rows = torch.tensor(rows)
        text_of = batch_rows.unsqueeze(1).expand(positions.shape)[positions.cpu()]
        for name, values in per_position.items():
            sums[name].index_add_(0, text_of, values)
        counts[batch_rows] = positions.sum(dim=1).cpu()
    if teacher is None:
        return TokenLosses(sums["nll"], counts)
    return TokenLosses(sums["nll"], counts, kl=sums["kl"], top1=sums["top1"],
                       overlap=sums["overlap"])  # fmt: skip


def _against(chunk: torch.Tensor, teacher: TopTokens, where: slice) -> dict[str, torch.Tensor]:
    """KL from the teacher, top-1 agreement and top-k overlap at a chunk of positions."""
    ids = teacher.ids[where].to(chunk.device)
    student_top, student_tail = coarse_logprobs(chunk, ids)
    kl = kl_from_teacher(
        teacher.logprobs[where].to(chunk.device), teacher.tail[where].to(chunk.device),
        student_top, student_tail,
    )  # fmt: skip
    overlap_k = min(OVERLAP_K, teacher.k)
    mine = chunk.topk(overlap_k, dim=-1).indices
    shared = (mine.unsqueeze(-1) == ids[:, :overlap_k].unsqueeze(-2)).any(dim=-1)
    return {
        "kl": kl,
        "top1": (mine[:, 0] == ids[:, 0]).float(),
        "overlap": shared.sum(dim=-1) / overlap_k,
    }


# What an LLM costs to run, the two phases of generating: reading a prompt (prefill) and
# writing each new token with the key-value cache (decode).
PREFILL_TOKENS = 128
DECODE_TOKENS = 16
SPEED_REPEATS = 3
GENERATION_COLUMNS = (
    Column("details.prefill_ms", "prefill ms", "{:.1f}"),
    Column("details.decode_ms_per_token", "decode ms/tok", "{:.2f}"),
)


@torch.inference_mode()
def generation_speed(model: Any, device: torch.device) -> dict[str, float]:
    """Batch-1 prefill ms for a ``PREFILL_TOKENS``-token prompt (fewer where the model's
    context is shorter) and decode ms per new token with the key-value cache, each the median
    of ``SPEED_REPEATS`` runs after one untimed run. The prompt is seeded random token ids:
    the cost of a forward pass does not depend on which tokens it reads."""
    config = model.config
    context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 0)
    length = max(1, min(PREFILL_TOKENS, (context or PREFILL_TOKENS) - DECODE_TOKENS))
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, config.vocab_size, (1, length), generator=generator).to(device)
    model.eval()
    prefills, decodes = [], []
    for repeat in range(SPEED_REPEATS + 1):
        _synchronize(device)
        start = time.perf_counter()
        out = model(input_ids=prompt, use_cache=True)
        _synchronize(device)
        prefilled = time.perf_counter()
        cache, token = out.past_key_values, out.logits[:, -1:].argmax(dim=-1)
        for _ in range(DECODE_TOKENS):
            out = model(input_ids=token, past_key_values=cache, use_cache=True)
            cache, token = out.past_key_values, out.logits[:, -1:].argmax(dim=-1)
        _synchronize(device)
        if repeat:  # the first run warms up
            prefills.append((prefilled - start) * 1000)
            decodes.append((time.perf_counter() - prefilled) * 1000 / DECODE_TOKENS)
    return {
        "prefill_tokens": length,
        "prefill_ms": round(statistics.median(prefills), 3),
        "decode_ms_per_token": round(statistics.median(decodes), 3),
    }


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
