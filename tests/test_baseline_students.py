"""The classical baselines through ``qcompress bench`` on the tiny BERT and tiny SST-2: the
DistilBERT-style student (with and without TinyBERT intermediate matching), any Hugging Face
model as a student, the BiLSTM and CNN trained from scratch, and the parameter-matched twin.
Each trains, beats chance, and counts its parameters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qcompress.interfaces import count_parameters


@pytest.fixture(scope="module")
def baselines_run(tmp_path_factory, tiny_bert_dir: Path, tiny_glue_dir: Path):
    from test_end_to_end import bench_students

    root = tmp_path_factory.mktemp("baselines_run")
    fast = {"epochs": 6, "lr": 0.003}
    slow = {"epochs": 12, "lr": 0.005}
    students = [
        {"name": "distil", "train": slow},
        {"name": "distil", "intermediate": 0.1, "keep": [1], "train": slow},
        # Layers from a model that is not the teacher (the untuned tiny BERT).
        {"name": "distil", "model": str(tiny_bert_dir), "label": "distil-other", "train": slow},
        {"name": "hf", "model": str(tiny_bert_dir), "objective": {"name": "mse"},
         "train": slow},
        {"name": "bilstm", "embedding_dim": 16, "hidden": 16, "train": fast},
        {"name": "cnn", "embedding_dim": 16, "channels": 8, "train": fast},
        {"name": "mlp", "encoder": str(tiny_bert_dir), "hidden": "match-qdllm"},
    ]  # fmt: skip
    return bench_students(root, tiny_bert_dir, tiny_glue_dir, "tiny-baselines", students)


def test_every_baseline_trains(baselines_run) -> None:
    assert baselines_run["code"] == 0, baselines_run["err"]
    assert "9 cells ran, 0 reused, 0 failed" in baselines_run["err"]
    for label, record in baselines_run["records"].items():
        assert record.status == "ok", (label, record.error)
        assert len(record.measured.train_log["loss_per_epoch"]) >= 3
        if not label.startswith("mlp"):  # the tiny BERT's random features are weak for probes
            assert record.measured.metrics["accuracy"] > 0.6, label  # chance: 0.5


def test_distil_keeps_every_other_teacher_layer(baselines_run, tiny_bert_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
    one_layer = count_parameters(teacher.bert.encoder.layer[0])
    record = baselines_run["records"]["distil"]
    assert record.measured.details["kept_layers"] == [0]  # 2 layers: every other = [0]
    assert record.measured.details["layers"] == 1
    assert record.measured.params["trainable"] == count_parameters(teacher) - one_layer
    assert record.measured.params["inference_total"] == record.measured.params["trainable"]
    matched = baselines_run["records"]["distil(intermediate=0.1,keep=[1])"]
    assert matched.measured.details["kept_layers"] == [1]
    assert record.measured.details["model"] == "teacher"


def test_distil_takes_the_layers_of_the_model_named(baselines_run, tiny_bert_dir: Path) -> None:
    """``model:`` names where the layers come from: here the tiny BERT before the teacher's
    fine-tuning, so the student starts from other weights than the teacher's own distil."""
    other = baselines_run["records"]["distil-other"]
    own = baselines_run["records"]["distil"]
    assert other.measured.details["model"] == str(tiny_bert_dir)
    assert other.measured.details["kept_layers"] == [0]
    assert other.measured.params == own.measured.params
    assert other.run["student"]["model"] == str(tiny_bert_dir)


def test_any_hf_model_as_a_student(baselines_run, tiny_bert_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    record = next(r for label, r in baselines_run["records"].items() if label.startswith("hf("))
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
    assert record.measured.params["trainable"] == count_parameters(teacher)
    assert record.run["objective"]["name"] == "mse"


def test_word_models_count_their_embeddings(baselines_run) -> None:
    for prefix in ("bilstm", "cnn"):
        record = next(r for label, r in baselines_run["records"].items()
                      if label.startswith(prefix))
        params = record.measured.params
        assert params["trainable"] == params["inference_total"]
        assert params["embeddings"] == record.measured.details["vocabulary"] * 16
        assert params["embeddings"] + params["network"] == params["trainable"]


def test_the_matched_twin_has_the_qdllm_budget(baselines_run) -> None:
    from qcompress_plugins.students.qdllm import trainable_parameters

    record = next(r for label, r in baselines_run["records"].items() if "match-qdllm" in label)
    hidden = 32  # the tiny BERT's features
    target = trainable_parameters(hidden, 2)  # 531: the circuit's 144 weigh a lot at 32-d
    width = record.measured.details["hidden_width"]
    assert width == 15
    assert record.measured.params["trainable"] == (hidden + 1) * width + (width + 1) * 2
    assert abs(record.measured.params["trainable"] - target) <= (hidden + 1 + 2) // 2


def test_intermediate_matching_pulls_hidden_states_towards_the_teacher(tmp_path) -> None:
    """The TinyBERT loss is zero for a student that equals the kept teacher layers, and its
    gradient moves a perturbed student's hidden states towards the teacher's."""
    from transformers import BertConfig, BertForSequenceClassification

    from qcompress_plugins.students.finetuned import DistilStudent

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=16, attn_implementation="eager")
    teacher = BertForSequenceClassification(config).eval()
    loss_of = DistilStudent._intermediate_loss(teacher, [0, 1], weight=1.0)
    tokens = {"input_ids": torch.tensor([[2, 5, 7, 3, 0]]),
              "attention_mask": torch.tensor([[1, 1, 1, 1, 0]])}
    same = teacher(**tokens, output_hidden_states=True, output_attentions=True)
    assert loss_of(same, tokens).item() == pytest.approx(0.0, abs=1e-12)
    student = BertForSequenceClassification(config).eval()  # no dropout
    student.load_state_dict(teacher.state_dict())
    with torch.no_grad():
        # Random, not constant: the layer norm after it would remove a constant shift.
        dense = student.bert.encoder.layer[1].output.dense.weight
        dense.add_(0.5 * torch.randn_like(dense))
    before = loss_of(student(**tokens, output_hidden_states=True, output_attentions=True), tokens)
    before.backward()
    with torch.no_grad():
        for parameter in student.parameters():
            if parameter.grad is not None:
                parameter.sub_(1e-4 * parameter.grad)  # a small step along -gradient
    after = loss_of(student(**tokens, output_hidden_states=True, output_attentions=True), tokens)
    assert after.item() < before.item()
