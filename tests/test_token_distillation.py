"""Token-level distillation of causal LMs: a teacher's top tokens at every predicted position,
a student compared with them (KL, top-1 agreement, top-k overlap) against a hand computation
on the full distributions, padding never counted, the coarse KL a lower bound of the full
one, the ``token-kd`` objective, and a suite that distils through ``qcompress bench``."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_story_lines

from qcompress.errors import QcompressError
from qcompress.interfaces import TopTokens
from qcompress.results import read_record
from qcompress_plugins.bases import language
from qcompress_plugins.objectives.language import TokenKD, TokenKDConfig

CPU = torch.device("cpu")
MAX_LENGTH = 12  # shorter than some texts: cut texts are compared as cut
K = 5


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def models(request: pytest.FixtureRequest):
    """A tiny teacher, a student (the teacher with noise on every weight) and the tokenizer."""
    folder = request.getfixturevalue(f"tiny_{request.param}_dir")
    teacher, tokenizer = language.load_causal_lm(str(folder), "teacher")
    student = copy.deepcopy(teacher)
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in student.parameters():
            parameter.add_(0.5 * parameter.std().nan_to_num(0.02) * torch.randn_like(parameter))
    return teacher.eval(), student.eval(), tokenizer


@pytest.fixture(scope="module")
def texts() -> list[str]:
    lines = tiny_story_lines(7, 5)
    return [lines[0], " ".join(lines[1:4]), lines[4].split()[0], lines[5], lines[6]]


def full_distributions(model, tokenizer, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The text alone (no padding): log-probabilities at each position whose next token is
    predicted ``[n, V]``, and those next tokens ``[n]``."""
    tokens = tokenizer([text], truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    with torch.no_grad():
        logits = model(**tokens).logits[0, :-1].float()
    return logits.log_softmax(dim=-1), tokens["input_ids"][0, 1:]


def test_top_tokens_are_the_k_best_of_each_full_distribution(models, texts) -> None:
    teacher, _, tokenizer = models
    top = language.top_tokens(teacher, tokenizer, texts, 2, MAX_LENGTH, CPU, K)
    assert len(top) == len(texts) and top.k == K
    for index, text in enumerate(texts):
        full, _ = full_distributions(teacher, tokenizer, text)
        rows = slice(int(top.offsets[index]), int(top.offsets[index + 1]))
        best = full.topk(K, dim=-1)
        torch.testing.assert_close(top.logprobs[rows], best.values, atol=1e-5, rtol=1e-5)
        assert torch.equal(top.ids[rows], best.indices)
        rest = 1 - best.values.exp().sum(dim=-1)
        torch.testing.assert_close(top.tail[rows].exp(), rest, atol=1e-5, rtol=1e-4)
    # The one-word text predicts nothing (its only token has no context): no rows.
    assert int(top.offsets[3]) == int(top.offsets[2]) + max(len(texts[2].split()) - 1, 0)


def test_comparison_with_the_teacher_matches_a_hand_computation(models, texts) -> None:
    teacher, student, tokenizer = models
    top = language.top_tokens(teacher, tokenizer, texts, 3, MAX_LENGTH, CPU, K)
    measured = language.token_losses_against(student, tokenizer, texts, 3, MAX_LENGTH, CPU, top)
    for index, text in enumerate(texts):
        p, targets = full_distributions(teacher, tokenizer, text)
        q, _ = full_distributions(student, tokenizer, text)
        ids = p.topk(K, dim=-1).indices
        p_top, q_top = p.gather(1, ids), q.gather(1, ids)
        p_rest = 1 - p_top.exp().sum(dim=-1)
        q_rest = 1 - q_top.exp().sum(dim=-1)
        kl = (p_top.exp() * (p_top - q_top)).sum(dim=-1) + p_rest * (p_rest.log() - q_rest.log())
        top1 = (q.argmax(dim=-1) == p.argmax(dim=-1)).sum()
        mine = q.topk(K, dim=-1).indices  # overlap over min(10, k) = 5 tokens here
        shared = [set(a.tolist()) & set(b.tolist()) for a, b in zip(mine, ids, strict=True)]
        overlap = sum(len(common) / K for common in shared)
        assert int(measured.tokens[index]) == len(targets)
        assert float(measured.nll[index]) == pytest.approx(
            float(-q.gather(1, targets.unsqueeze(1)).sum()), rel=1e-4, abs=1e-4
        )
        assert float(measured.kl[index]) == pytest.approx(float(kl.sum()), rel=1e-3, abs=1e-4)
        assert float(measured.top1[index]) == int(top1)
        assert float(measured.overlap[index]) == pytest.approx(overlap, abs=1e-6)
    # The same numbers whatever the batch (padding is never counted).
    alone = language.token_losses_against(student, tokenizer, texts, 1, MAX_LENGTH, CPU, top)
    for name in ("nll", "kl", "top1", "overlap"):
        torch.testing.assert_close(getattr(alone, name), getattr(measured, name), atol=1e-4,
                                   rtol=1e-4)  # fmt: skip
    # Against itself: no divergence, full agreement.
    itself = language.token_losses_against(teacher, tokenizer, texts, 3, MAX_LENGTH, CPU, top)
    assert itself.per_token("kl") == pytest.approx(0, abs=1e-5)
    assert itself.per_token("top1") == 1 and itself.per_token("overlap") == pytest.approx(1)


def test_a_shorter_max_length_is_compared_on_the_teachers_first_tokens(models, texts) -> None:
    """A student keeping 6 tokens per text is compared with the teacher's first 5 positions of
    each; one keeping more than the teacher predicted is refused, naming the cause."""
    teacher, student, tokenizer = models
    top = language.top_tokens(teacher, tokenizer, texts, 3, MAX_LENGTH, CPU, K)
    short = language.token_losses_against(student, tokenizer, texts, 3, 6, CPU, top)
    assert short.tokens.tolist() == [min(len(t.split()), 6) - 1 for t in texts]
    shorter_teacher = language.top_tokens(teacher, tokenizer, texts, 3, 6, CPU, K)
    same = language.token_losses_against(student, tokenizer, texts, 3, 6, CPU, shorter_teacher)
    torch.testing.assert_close(short.kl, same.kl)
    with pytest.raises(QcompressError, match="teacher's tokenizer and no longer a max_length"):
        language.token_losses_against(student, tokenizer, texts, 3, 6, CPU, shorter_teacher.rows(
            [0, 1, 2, 3, 4]).first([0, 0, 0, 0, 0]))


def test_the_coarse_kl_is_a_lower_bound_of_the_full_kl() -> None:
    torch.manual_seed(0)
    p = (3 * torch.randn(64, 40)).log_softmax(dim=-1)
    q = (3 * torch.randn(64, 40)).log_softmax(dim=-1)
    full = (p.exp() * (p - q)).sum(dim=-1)
    for k in (1, 5, 20, 40):
        ids = p.topk(k, dim=-1).indices
        p_top, p_tail = language.coarse_logprobs(p, ids)
        q_top, q_tail = language.coarse_logprobs(q, ids)
        coarse = language.kl_from_teacher(p_top, p_tail, q_top, q_tail)
        assert (coarse <= full + 1e-5).all() and (coarse >= -1e-6).all(), k
    torch.testing.assert_close(coarse, full, atol=1e-5, rtol=1e-4)  # k = V: exact


def top_tokens_of(logits: torch.Tensor, labels: torch.Tensor, k: int) -> TopTokens:
    """A teacher's top tokens for one batch, from its logits."""
    positions = language.predicted_positions(labels)
    logprobs = logits[:, :-1][positions].log_softmax(dim=-1)
    best = logprobs.topk(k, dim=-1)
    counts = positions.sum(dim=1)
    return TopTokens(
        best.indices, best.values, language._tail(best.values),
        torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]),
    )


@pytest.mark.parametrize("divergence", ["forward", "reverse"])
def test_token_kd_is_the_mixed_loss_and_zero_kl_on_the_teacher_itself(divergence: str) -> None:
    torch.manual_seed(0)
    labels = torch.randint(0, 30, (3, 7))
    labels[1, 5:] = language.IGNORE_INDEX  # padding
    teacher_logits = torch.randn(3, 7, 30)
    targets = top_tokens_of(teacher_logits, labels, 8)
    objective = TokenKD(TokenKDConfig(alpha=0.25, divergence=divergence))
    ce = language.shifted_token_nll(teacher_logits, labels).sum() / (labels[:, 1:] != -100).sum()
    same = objective(teacher_logits, targets, labels)
    assert float(same) == pytest.approx(0.75 * float(ce), abs=1e-5)  # its own KL is 0

    student = torch.randn(3, 7, 30, requires_grad=True)
    loss = objective(student, targets, labels)
    loss.backward()
    student_ce = language.shifted_token_nll(student.detach(), labels).sum() / 17
    assert loss.item() > 0.75 * student_ce.item()  # plus a positive KL to the teacher
    assert torch.isfinite(student.grad).all()
    assert student.grad[1, 5:].abs().sum() == 0  # padding gets no gradient
    with pytest.raises(QcompressError, match="needs the teacher's tokenizer"):
        objective(student, targets.rows([1, 0, 2]), labels)
    with pytest.raises(QcompressError, match="learns from a language-model teacher"):
        objective(student, None, labels)


# -- through qcompress bench ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def kd_run(tmp_path_factory, tiny_gpt2_dir: Path, tiny_text_dir: Path):
    from test_end_to_end import bench

    root = tmp_path_factory.mktemp("kd_run")
    student = {"name": "hf", "model": "teacher", "max_length": 48}
    suite = {
        "name": "tiny-kd",
        "data_dir": str(tiny_text_dir),
        "device": "cpu",
        "task": {"name": "text", "file": "text/tiny.txt", "eval_fraction": 0.25,
                 "passage_chars": 120},
        "teacher": {"name": "causal-lm", "model": str(tiny_gpt2_dir), "max_length": 48},
        "train": {"epochs": 3, "batch_size": 16, "lr": 0.003},
        "seeds": [0],
        "students": [
            {**student, "label": "lm"},
            {**student, "label": "kd", "objective": {"name": "token-kd", "alpha": 1.0}},
            {**student, "label": "reverse-kd",
             "objective": {"name": "token-kd", "alpha": 1.0, "divergence": "reverse"}},
        ],
        "measure": {"latency_samples": 2, "warmup": 1, "throughput_samples": 8},
    }  # fmt: skip
    path = root / "tiny-kd.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    code, _, err = bench(path, root / "results", root / "cache")
    records = {}
    for file in (root / "results" / "tiny-kd").glob("*.json"):
        record = read_record(file)
        if record is not None:
            records[record.run["label"]] = record
    return {"code": code, "err": err, "records": records, "root": root, "suite": suite}


def test_students_distil_the_teachers_tokens_through_bench(kd_run) -> None:
    assert kd_run["code"] == 0, kd_run["err"]
    records = kd_run["records"]
    assert set(records) == {"teacher:causal-lm", "lm", "kd", "reverse-kd"}
    students = ("lm", "kd", "reverse-kd")
    kl = {label: records[label].measured.metrics["token_kl"] for label in students}
    # Learning the corpus moves the student away from the (random) teacher; distilling its
    # tokens keeps it near: the distilled students end far closer to it.
    assert kl["kd"] < 0.5 * kl["lm"] and kl["reverse-kd"] < 0.5 * kl["lm"], kl
    agreement = {label: records[label].measured.metrics["token_top1_agreement"] for label in kl}
    assert agreement["kd"] > agreement["lm"], agreement
    # Top tokens of both splits, cached once (the distilling students need the training one).
    assert len(list((kd_run["root"] / "cache" / "teacher-top-tokens").glob("*.pt"))) == 2


def test_a_suite_without_distillation_computes_no_training_top_tokens(
    kd_run, tmp_path: Path
) -> None:
    from test_end_to_end import bench

    suite = {**kd_run["suite"], "name": "tiny-lm-only",
             "students": kd_run["suite"]["students"][:1]}  # fmt: skip
    path = tmp_path / "tiny-lm-only.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    code, _, err = bench(path, tmp_path / "results", tmp_path / "cache")
    assert code == 0, err
    assert len(list((tmp_path / "cache" / "teacher-top-tokens").glob("*.pt"))) == 1  # eval only
