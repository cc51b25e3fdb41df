"""The QD-LLM student, its objective and its tasks (docs/methods.md §1).

- the circuit gate by gate against the released ansatz, and its 144 parameters;
- trainable parameters: 8,627 with a 768-d encoder and 2 classes, 4,403 with MiniLM's 384-d;
- the objective against a hand computation (standard and double-softmax JS);
- a tiny training run beats chance;
- the whole student through ``qcompress bench`` on the tiny BERT: the teacher's encoder as an
  option, emulation on qiskit and cirq with shots, the trained circuit's OpenQASM in the record
  (it re-imports into qiskit with the same expectations);
- the three tasks: seeded stratified split, deduplication, provenance, clear errors.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import tiny_sentiment_rows

from qcompress.circuit import feature
from qcompress.errors import DataError
from qcompress.interfaces import TrainSettings
from qcompress.progress import ProgressReporter
from qcompress.results import read_record
from qcompress.training import train_module
from qcompress_plugins.backends.torch_sim.backend import TorchBackend, TorchConfig
from qcompress_plugins.objectives.kd import CEConfig, CrossEntropy
from qcompress_plugins.objectives.qdllm import QDLLMObjective, QDLLMObjectiveConfig
from qcompress_plugins.students.feature_mlp import build_head, matched_width
from qcompress_plugins.students.qdllm import QDLLMNet, min_max_angles, trainable_parameters
from qcompress_plugins.students.qdllm_circuit import qdllm_circuit
from qcompress_plugins.tasks.qdllm import Senti, Topic

# -- the circuit ---------------------------------------------------------------------------------


def released_layer() -> list[tuple[str, tuple[int, ...]]]:
    """One ansatz layer at 11 qubits, written out from docs/methods.md §1 item 4."""
    gates: list[tuple[str, tuple[int, ...]]] = []
    for j in range(10):
        gates += [("ry", (j,))] * 3
        if j <= 8:
            gates.append(("rzz", (j + 1, j + 2)))
    for j in range(11):
        gates += [("rz", (j,))] * 3
    gates.append(("cnot", (10, 0)))
    for k in range(1, 9):
        gates += [("cnot", (k, k + 1)), ("cnot", (k, k - 1))]
    return gates


def test_the_circuit_gate_by_gate() -> None:
    circuit = qdllm_circuit()
    encoding = [("rx", (q,)) for q in range(11)]
    assert [(g.name, g.qubits) for g in circuit.gates] == encoding + released_layer() * 2
    # The encoding reads input i on qubit i, unscaled; every other angle is its own weight.
    assert [g.angles[0] for g in circuit.gates[:11]] == [feature(q) for q in range(11)]
    weights = [a.index for g in circuit.gates[11:] for a in g.angles]
    assert weights == list(range(144))
    assert (circuit.n_qubits, circuit.n_inputs, circuit.n_weights, circuit.n_outputs) == (
        11, 11, 144, 11)  # fmt: skip
    assert [str(r) for r in circuit.readouts] == [f"Z{q}" for q in range(11)]


def test_72_parameters_per_layer() -> None:
    for layers in (1, 2, 3):
        assert qdllm_circuit(11, layers).n_weights == 72 * layers


def test_the_last_layers_rz_are_inert() -> None:
    """Between the last RZs and the Z readout there are only CNOTs: those 33 angles cannot
    change any output. Their gradients are zero (up to rounding), and the record says so."""
    circuit = qdllm_circuit()
    inert = circuit.inert_weights()
    last_rz = [a.index for g in circuit.gates[11 + 89 :] if g.name == "rz" for a in g.angles]
    assert inert == last_rz and len(inert) == 33
    backend = TorchBackend(TorchConfig(dtype="complex128"))
    weights = torch.randn(144, dtype=torch.float64, requires_grad=True)
    inputs = torch.rand(4, 11, dtype=torch.float64) * 10
    backend.expectations(circuit, inputs, weights).sum().backward()
    assert weights.grad[inert].abs().max() < 1e-12  # zero up to rounding
    live = sorted(set(range(144)) - set(inert))
    assert (weights.grad[live].abs() > 1e-6).sum() > 100


# -- the student's parameters --------------------------------------------------------------------


@pytest.mark.parametrize(("features", "classes", "expected"), [
    (768, 2, 8_627),  # the paper's BERT-base: 8,459 + 144 + 24
    (384, 2, 4_403),  # MiniLM-L6: 4,235 + 144 + 24
    (384, 4, 4_427),  # MiniLM-L6, topic (4 classes): 4,235 + 144 + 48
])  # fmt: skip
def test_trainable_parameters(features: int, classes: int, expected: int) -> None:
    net = QDLLMNet(features, qdllm_circuit(), classes, TorchBackend(), angle_range=10.0)
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == expected
    assert net.weights.numel() == 144


def test_the_formula_counts_what_the_net_has() -> None:
    for features, classes, qubits, layers in [(768, 2, 11, 2), (384, 4, 11, 2), (32, 3, 5, 1)]:
        net = QDLLMNet(features, qdllm_circuit(qubits, layers), classes, TorchBackend(), 10.0)
        built = sum(p.numel() for p in net.parameters())
        assert trainable_parameters(features, classes, qubits, layers) == built


@pytest.mark.parametrize(("features", "classes"), [(384, 2), (384, 4), (768, 2)])
def test_the_parameter_matched_twin(features: int, classes: int) -> None:
    """The classical twin with the trainable budget of qdllm: the closest hidden width."""
    target = trainable_parameters(features, classes)
    width = matched_width(target, features, classes)
    assert width == 11  # the circuit's 11 outputs, replaced by an 11-wide hidden layer
    def count(h: int) -> int:
        return sum(p.numel() for p in build_head(features, h, classes, 0.0).parameters())
    assert abs(count(width) - target) <= min(abs(count(width + 1) - target),
                                             abs(count(width - 1) - target))
    assert abs(count(width) - target) / target < 0.05


def test_min_max_angles() -> None:
    projected = torch.tensor([[1.0, 3.0, 2.0], [-4.0, -4.0, -4.0]])
    angles = min_max_angles(projected, 10.0)
    assert torch.allclose(angles[0], torch.tensor([0.0, 10.0, 5.0]))
    assert torch.equal(angles[1], torch.zeros(3))  # no spread: no NaN


# -- the objective -------------------------------------------------------------------------------


def softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))


def js(p: list[float], q: list[float]) -> float:
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]
    return (kl(p, m) + kl(q, m)) / 2


@pytest.mark.parametrize("variant", ["standard", "double-softmax"])
def test_objective_against_a_hand_computation(variant: str) -> None:
    student = [[1.5, -0.5], [0.2, 0.9]]
    teacher = [[3.0, -1.0], [-0.5, 2.0]]
    labels = [0, 1]
    temperature, alpha = 2.0, 0.5
    expected = 0.0
    for s, t, y in zip(student, teacher, labels, strict=True):
        ce = -math.log(softmax(s)[y])
        p = softmax([v / temperature for v in s])
        q = softmax([v / temperature for v in t])
        divergence = kl(q, p)  # KL(teacher || student)
        if variant == "double-softmax":
            p, q = softmax(p), softmax(q)
        expected += (1 - alpha) * ce + alpha * temperature**2 * divergence + alpha * js(p, q)
    expected /= len(labels)
    objective = QDLLMObjective(QDLLMObjectiveConfig(js=variant))
    loss = objective(torch.tensor(student), torch.tensor(teacher), torch.tensor(labels))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_the_double_softmax_quirk_shrinks_the_js_term() -> None:
    student, teacher = torch.tensor([[4.0, -4.0]]), torch.tensor([[-4.0, 4.0]])
    labels = torch.tensor([0])
    only_js = {"alpha": 1.0, "temperature": 1.0}
    kl_term = QDLLMObjective(QDLLMObjectiveConfig(**only_js))(student, teacher, labels)
    quirk = QDLLMObjective(QDLLMObjectiveConfig(**only_js, js="double-softmax"))
    # Both carry the same KL term; the double softmax squeezes the JS term towards 0.
    assert quirk(student, teacher, labels) < kl_term


# -- training ------------------------------------------------------------------------------------


def test_a_tiny_training_run_beats_chance() -> None:
    """Two Gaussian blobs in 16 dimensions, 4 qubits, 1 layer, cross-entropy only."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 2
    centres = torch.randn(2, 16, generator=generator) * 2
    features = centres[labels] + torch.randn(200, 16, generator=generator)
    torch.manual_seed(0)
    net = QDLLMNet(16, qdllm_circuit(4, 1), 2, TorchBackend(), angle_range=10.0)
    settings = TrainSettings(epochs=15, batch_size=20, lr=0.05)
    objective = CrossEntropy(CEConfig())
    report = train_module(net, features[:160], torch.zeros(160, 2), labels[:160], objective,
                          settings, ProgressReporter())
    assert report.loss_per_epoch[-1] < report.loss_per_epoch[0]
    with torch.no_grad():
        accuracy = (net(features[160:]).argmax(-1) == labels[160:]).float().mean().item()
    assert accuracy >= 0.8  # chance is 0.5


# -- the tasks -----------------------------------------------------------------------------------


def write_per_class(folder: Path, files: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_senti_split_is_seeded_stratified_and_recorded(tmp_path: Path) -> None:
    rows = tiny_sentiment_rows(200, seed=3)
    negative = [text for text, label in rows if label == 0]
    positive = [text for text, label in rows if label == 1]
    # A repeated text and one filed under both classes.
    write_per_class(tmp_path / "qdllm" / "senti", {
        "train_neg.txt": [*negative, negative[0], "both ways"],
        "train_pos.txt": [*positive, "both ways"],
    })  # fmt: skip
    data = Senti(Senti.Config(name="senti", seed=7)).load(tmp_path)
    unique = len(set(negative)) + len(set(positive))
    assert len(data.train) + len(data.eval) + data.provenance["validation"]["rows"] == unique
    assert data.provenance["deduplicated"]["ambiguous_texts"] == 1
    assert "both ways" not in data.train.texts + data.eval.texts
    assert not set(data.train.texts) & set(data.eval.texts)
    assert data.label_names == ["negative", "positive"]
    # Stratified: every part keeps the classes balanced (here 50/50, within one row).
    counts = data.provenance["eval"]["per_class"]
    assert abs(counts["negative"] - counts["positive"]) <= 1
    assert data.provenance["split"]["fractions"] == [0.8, 0.1, 0.1]
    assert data.provenance["split"]["scored_on"] == "test"
    # The same seed gives the same split; another seed another one.
    again = Senti(Senti.Config(name="senti", seed=7)).load(tmp_path)
    assert again.fingerprint() == data.fingerprint()
    other = Senti(Senti.Config(name="senti", seed=8)).load(tmp_path)
    assert other.eval.fingerprint() != data.eval.fingerprint()


def test_topic_has_four_classes_in_file_order(tmp_path: Path) -> None:
    names = ["business", "sci", "sport", "world"]
    write_per_class(tmp_path / "topic", {
        f"train_{name}.txt": [f"{name} text {i}" for i in range(20)] for name in names
    })  # fmt: skip
    data = Topic(Topic.Config(name="topic", path=str(tmp_path / "topic"))).load(None)
    assert data.label_names == names and data.num_classes == 4
    for label, name in enumerate(names):
        texts = [t for t, y in zip(data.train.texts, data.train.labels.tolist(), strict=True)
                 if y == label]
        assert texts and all(t.startswith(name) for t in texts)


def test_task_errors_say_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="QCOMPRESS_DATA_DIR"):
        Senti(Senti.Config(name="senti")).load(None)
    with pytest.raises(DataError, match=r"missing data file .*train_neg\.txt"):
        Senti(Senti.Config(name="senti")).load(tmp_path)
    with pytest.raises(ValueError, match="three positive shares adding up to 1"):
        Senti.Config(name="senti", fractions=(0.8, 0.3, 0.1))


@pytest.mark.data
@pytest.mark.parametrize(("task", "classes", "rows"), [
    ("senti", 2, 19_901), ("stega", 2, 4_000), ("topic", 4, 7_883),
])  # fmt: skip
def test_real_qdllm_tasks(data_dir: Path, task: str, classes: int, rows: int) -> None:
    from qcompress.plugins import load_registry

    task_cls = load_registry().get("task", task)
    data = task_cls(task_cls.Config(name=task)).load(data_dir)
    assert data.num_classes == classes
    kept = data.provenance["deduplicated"]["rows_kept"]
    assert kept == rows
    assert len(data.train) + len(data.eval) + data.provenance["validation"]["rows"] == kept
    assert len(data.eval) == pytest.approx(kept / 10, abs=classes)


# -- the student end to end ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def qdllm_run(tmp_path_factory, tiny_bert_dir: Path, tiny_glue_dir: Path):
    """``qcompress bench`` on the tiny BERT: qdllm on the pretrained encoder with emulation on
    qiskit and cirq, and qdllm on the teacher's own (fine-tuned) encoder."""
    from test_end_to_end import bench, write_suite

    root = tmp_path_factory.mktemp("qdllm_run")
    students = [
        {"name": "qdllm", "encoder": str(tiny_bert_dir), "objective": {"name": "qdllm"},
         "train": {"epochs": 15, "lr": 0.05},
         "emulate": [{"name": "qiskit", "shots": 256}, {"name": "cirq", "shots": 256},
                     {"name": "qiskit", "shots": 256, "noise": "depolarizing",
                      "depolarizing_2q": 0.05}],
         "emulate_rows": 12},
        {"name": "qdllm", "encoder": "teacher", "qubits": 4, "layers": 1,
         "objective": {"name": "qdllm", "js": "double-softmax"}},
    ]  # fmt: skip
    suite = write_suite(root, tiny_bert_dir, tiny_glue_dir, name="tiny-qdllm",
                        extra_students=students, seeds=[0])
    code, out, err = bench(suite, root / "results", root / "cache")
    records = [read_record(p) for p in (root / "results" / "tiny-qdllm").glob("*.json")
               if not p.name.startswith(("teacher-", "manifest"))]
    return {"code": code, "out": out, "err": err, "records": records}


def qdllm_records(run) -> list[dict]:
    return [r for r in run["records"] if r.run["student"]["name"] == "qdllm"]


def test_bench_runs_qdllm_beside_the_classical_students(qdllm_run) -> None:
    assert qdllm_run["code"] == 0, qdllm_run["err"]
    assert "4 cells ran, 0 reused, 0 failed" in qdllm_run["err"]
    out = " ".join(qdllm_run["out"].split())
    assert "qdllm(" in out and "mlp(" in out
    assert "re-run on other backends" in out  # the emulation table
    assert "head ms" in out  # every frozen-feature student's own batch-1 latency
    for record in qdllm_run["records"]:
        assert record.measured.details["head_latency_ms"] > 0


def test_qdllm_record(qdllm_run, tiny_bert_dir: Path) -> None:
    emulated, on_teacher = sorted(qdllm_records(qdllm_run), key=lambda r: "emulate" not in
                                  r.run["student"] or not r.run["student"]["emulate"])
    for record in (emulated, on_teacher):
        assert record.status == "ok", record.error
    params = emulated.measured.params
    hidden = 32  # the tiny BERT
    assert params["projection"] == hidden * 11 + 11
    assert params["circuit"] == 144 and params["readout"] == 11 * 2 + 2
    assert params["trainable"] == params["projection"] + 144 + 24
    assert params["inference_total"] == params["trainable"] + params["encoder"]
    details = emulated.measured.details
    assert details["backend"]["name"] == "torch" and details["backend"]["gradient"] == "adjoint"
    assert details["circuit"]["qubits"] == 11 and details["circuit"]["circuit_parameters"] == 144
    assert details["circuit"]["inert_weights"] == 33
    assert details["head_latency_ms"] > 0
    assert emulated.measured.metrics["accuracy"] > 0.5  # chance on the balanced tiny dev split
    # The teacher's own encoder: a different encoder fingerprint, 4 qubits x 1 layer.
    assert on_teacher.measured.details["encoder_fingerprint"] != details["encoder_fingerprint"]
    assert on_teacher.measured.params["circuit"] == 23  # 4 qubits, 1 layer: 9 RY + 2 RZZ + 12 RZ


def test_emulation_variants(qdllm_run) -> None:
    record = next(r for r in qdllm_records(qdllm_run) if r.run["student"]["emulate"])
    variants = record.measured.variants
    # Nested settings show as their size in the default label.
    assert "emulate=[3 entries]" in record.run["label"]
    assert [v["label"] for v in variants] == [
        "qiskit shots=256 noise=none",
        "cirq shots=256 noise=none",
        "qiskit shots=256 noise=depolarizing(1q=0.001, 2q=0.05, readout=0.0)",
    ]
    for variant in variants:
        assert variant["rows"] == 12
        assert 0 <= variant["agreement_with_student"] <= 1
        assert set(variant["metrics"]) == set(variant["student_metrics"])
        assert variant["details"]["backend"]["shots"] == 256
    # With 256 shots the sampled <Z> are close to exact: most predictions agree.
    assert variants[0]["agreement_with_student"] >= 0.75


def test_the_recorded_openqasm_is_the_trained_circuit(qdllm_run) -> None:
    from qiskit import qasm3

    record = next(r for r in qdllm_records(qdllm_run) if r.run["student"]["emulate"])
    program = qasm3.loads(record.measured.details["openqasm3"])
    assert program.num_qubits == 11
    assert sorted(p.name for p in program.parameters) == sorted(f"x{i}" for i in range(11))
    operations = program.count_ops()
    assert operations["measure"] == 11
    assert sum(operations.values()) - 11 == 189
    from qiskit import qasm2

    one_text = qasm2.loads(record.measured.details["openqasm2_first_eval_text"],
                           custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
    assert one_text.num_qubits == 11 and not one_text.parameters


def test_a_trained_circuit_in_openqasm3_gives_the_same_expectations() -> None:
    """The export the record keeps: weights bound, inputs free (``input float[64] x<i>``)."""
    from qiskit import qasm3
    from qiskit.quantum_info import SparsePauliOp, Statevector

    from qcompress.export import to_qasm

    torch.manual_seed(1)
    backend = TorchBackend(TorchConfig(dtype="complex128"))
    net = QDLLMNet(8, qdllm_circuit(), 2, backend, angle_range=10.0).double()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    features, labels = torch.randn(16, 8, dtype=torch.float64), torch.arange(16) % 2
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(features), labels).backward()
        optimizer.step()
    program = qasm3.loads(to_qasm(net.circuit, None, net.weights.detach(), version=3))
    program.remove_final_measurements(inplace=True)
    with torch.no_grad():
        angles = net.angles(features[:3])
        expected = backend.expectations(net.circuit, angles, net.weights)
    for row in range(3):
        bound = program.assign_parameters(
            {p: float(angles[row, int(p.name[1:])]) for p in program.parameters})
        state = Statevector(bound)
        values = [state.expectation_value(SparsePauliOp("I" * (10 - q) + "Z" + "I" * q)).real
                  for q in range(11)]
        assert torch.allclose(torch.tensor(values, dtype=torch.float64), expected[row],
                              atol=1e-9)
