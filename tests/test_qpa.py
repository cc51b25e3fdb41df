"""QPA's generator (docs/methods.md §2): the exact parameter arithmetic of its GPT-2 setting, the
circuit, the post-processing, and gradients reaching the generator through a peft LoRA."""

from __future__ import annotations

import math

import pytest
import torch

from qcompress_plugins.adapters.qpa import (
    QPAGenerator,
    attach_generator,
    count_lora_values,
    index_bits,
    qpa_circuit,
)
from qcompress_plugins.backends.torch_sim.backend import TorchBackend, TorchConfig
from qcompress_plugins.bases.finetuned import with_lora

peft = pytest.importorskip("peft", reason="peft is in the project's dependencies")


def gpt2_with_lora(**config):
    """GPT-2 (124M) built from its config, no weights needed, with peft LoRA."""
    from transformers import AutoModelForCausalLM, GPT2Config

    model = AutoModelForCausalLM.from_config(GPT2Config(**config))
    lora = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05, target_modules=["lm_head"])
    return with_lora(model, lora)


def test_gpt2_lm_head_rank4_has_the_papers_counts() -> None:
    model = gpt2_with_lora()
    lora_values = count_lora_values(model)
    assert lora_values == 50257 * 4 + 4 * 768 == 204_100
    generator = QPAGenerator(lora_values, TorchBackend(), chunk_size=2048, depth=8)
    assert (generator.n_chunks, generator.n_qubits) == (100, 7)
    qnn = generator.qnn_weights.numel()
    mapping = sum(p.numel() for p in generator.mapping.parameters())
    assert (qnn, mapping) == (56, 38_624 + 67_584)
    trainable = sum(p.numel() for p in generator.parameters())
    assert trainable == 106_264
    assert round(100 * trainable / lora_values, 2) == 52.06


def test_the_qnn_is_ry_blocks_and_a_cnot_ladder() -> None:
    circuit = qpa_circuit(3, 2)
    names = [(g.name, g.qubits) for g in circuit.gates]
    block = [("ry", (0,)), ("ry", (1,)), ("ry", (2,)), ("cnot", (0, 1)), ("cnot", (1, 2))]
    assert names == block * 2
    assert circuit.n_weights == 6 and circuit.n_inputs == 0 and circuit.n_outputs == 8


def test_index_bits() -> None:
    assert index_bits(torch.tensor([0, 5]), 3).tolist() == [[-1, -1, -1], [1, -1, 1]]


def test_chunk_inputs_follow_the_post_processing_formula() -> None:
    backend = TorchBackend(TorchConfig(dtype="complex128"))
    generator = QPAGenerator(10, backend, chunk_size=2, depth=2, gamma=0.1, beta=0.6, alpha=0.15)
    assert (generator.n_chunks, generator.n_qubits) == (5, 3)
    inputs = generator.chunk_inputs().detach()
    probs = backend.expectations(
        generator.circuit, torch.zeros(1, 0, dtype=torch.float64),
        generator.qnn_weights.detach().double())[0][:5]  # fmt: skip
    x = [(0.6 * math.tanh(0.1 * 2**2 * p)) ** 0.15 for p in probs.tolist()]
    mean = sum(x) / len(x)
    assert inputs[:, -1].tolist() == pytest.approx([v - mean for v in x], abs=1e-6)
    assert inputs[:, :3].tolist() == index_bits(torch.arange(5), 3).tolist()


def test_generated_values_are_centred_and_generated_once_per_pass() -> None:
    generator = QPAGenerator(1000, TorchBackend(), chunk_size=64, depth=3)
    values = generator()
    assert values.shape == (1000,) and abs(values.mean().item()) < 1e-5
    with generator.sharing():
        assert generator() is generator()
    assert generator() is not generator()


def test_generated_values_start_small_unless_released_init_is_asked() -> None:
    torch.manual_seed(0)
    released = QPAGenerator(1000, TorchBackend(), chunk_size=64, depth=3, init_scale=1.0)
    torch.manual_seed(0)
    small = QPAGenerator(1000, TorchBackend(), chunk_size=64, depth=3)  # init_scale 0.01
    # The output layer is the only one scaled, and the values are linear in it.
    torch.testing.assert_close(small(), 0.01 * released(), rtol=1e-4, atol=1e-7)
    assert released().std() > 0.05 and small().std() < 0.005


def test_gradients_reach_the_generator_through_the_lora() -> None:
    model = gpt2_with_lora(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=16)
    generator = QPAGenerator(count_lora_values(model), TorchBackend(), chunk_size=16, depth=2)
    assert attach_generator(model, generator) == 64 * 4 + 4 * 32
    assert not any(p.requires_grad for p in model.parameters())  # LoRA and base: frozen
    ids = torch.randint(0, 64, (2, 8))
    with generator.sharing():
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert generator.qnn_weights.grad.abs().sum() > 0
    assert all(p.grad is not None for p in generator.mapping.parameters())
    # The LoRA's B tensor now holds generated, not zero, values: the adapter is live.
    lm_head = model.base_model.model.lm_head
    assert lm_head.lora_B["default"].weight.abs().sum() > 0
