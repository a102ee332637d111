"""The memory estimate (engram_run.runs.memory) against peaks measured on a CPU, the real shapes
against the published parameter counts, and the recipes' headers and settings current."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from helpers.common import REPO

from engram_run.runs.architectures import ARCHITECTURES, PARAMS, config_for
from engram_run.runs.memory import Setting, estimate, shape_of

TINY = {
    "llama": dict(
        hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, intermediate_size=512
    ),
    "gpt2": dict(n_embd=128, n_layer=4, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0),
    "gpt_neox": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512),
    "gptj": dict(n_embd=128, n_layer=4, n_head=4, rotary_dim=16, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0),
}
CASES = [(arch, 4096, 8, 128, ckpt) for arch in TINY for ckpt in (False, True)] + [
    ("llama", 512, 16, 256, False),
    ("llama", 512, 16, 256, True),
]


def measured_peak(model, optimizer, ids) -> int:
    """Peak bytes of one training step (forward, backward, AdamW step) after a first one has
    created the optimizer's states, by PyTorch's MemTracker (parameters, gradients, states,
    activations and temporaries)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    def step():
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()
    tracker = MemTracker()
    tracker.track_external(model, optimizer)
    with tracker:
        step()
    return tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]


@pytest.mark.parametrize(("arch", "vocab", "micro", "tokens", "ckpt"), CASES, ids=str)
def test_the_estimate_holds_the_measured_peak_of_a_tiny_model(arch, vocab, micro, tokens, ckpt):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    attention = "eager" if arch == "gptj" else "sdpa"  # transformers has no SDPA for GPT-J
    config = AutoConfig.for_model(arch, vocab_size=vocab, **TINY[arch])
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attention)
    if ckpt:
        model.gradient_checkpointing_enable()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    peak = measured_peak(model, optimizer, torch.randint(0, vocab, (micro, tokens)))
    # fp32 on a CPU: weights, gradients and AdamW's states in fp32, like fp32 master weights.
    setting = Setting("full", micro, tokens, ckpt, True, 4, "none", compute_bytes=4, eager_attention=arch == "gptj")
    est = estimate(shape_of(config), setting)
    assert 0.95 <= est["tensors"] / peak <= 1.4, (est["tensors"] / peak, peak)


def test_the_estimate_orders_what_it_should():
    shape = shape_of(config_for("meta-llama/Llama-3.1-8B"))
    lora = estimate(shape, Setting("lora", 8, 512, True, False, 4, "none", lora_r=32))
    qlora = estimate(shape, Setting("qlora", 8, 512, True, False, 1, "none", lora_r=32))
    full = estimate(shape, Setting("full", 8, 512, True, True, 4, "none"))
    fsdp = estimate(shape, Setting("full", 2, 512, True, True, 4, "fsdp2", gpus=4))
    assert qlora["weights"] < lora["weights"] / 2 and full["total"] > lora["total"]
    assert fsdp["optimizer"] == full["optimizer"] / 4  # sharded over 4
    assert full["weights"] == shape.params * 4 and full["optimizer"] == shape.params * 8  # fp32 masters
    no_ckpt = estimate(shape, Setting("lora", 8, 512, False, False, 4, "none", lora_r=32))
    assert no_ckpt["activations"] > 5 * lora["activations"]


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_the_stored_shapes_have_the_published_parameter_counts(name):
    assert shape_of(config_for(name)).params == pytest.approx(PARAMS[name], rel=0.005)


def test_recipe_headers_settings_and_tables_are_what_the_estimate_writes():
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/memory.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_bench_gpu_runs_its_recipes_through_axolotl_in_small_mode(tmp_path):
    """`make bench-gpu`'s code on a CPU: a full and a LoRA recipe through `axolotl train` on
    tiny shapes of their architectures, tokens/s and the step-0 recall's seconds from the logs."""
    import json

    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks/bench_gpu.py"),
            "--small",
            "--recipes",
            "gpt2 llama3b",
            "--steps",
            "2",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    result = json.loads((tmp_path / "gpu_small.json").read_text())
    assert [r["recipe"] for r in result["rows"]] == ["gpt2.yml", "llama3b.yml"]
    for row in result["rows"]:
        assert row["status"] == "ok" and row["steps"] == 2
        assert row["tokens_per_s"] > 0 and row["recall_eval_s"] > 0
        assert row["peak_gib"] is None  # Axolotl logs GPU memory only on a GPU
    table = (tmp_path / "gpu_small.md").read_text()
    assert "| `gpt2.yml` | 4.8 |" in table and "tiny shapes" in table


def test_bench_gpu_needs_a_gpu_unless_small(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/bench_gpu.py"), "--out", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "no CUDA GPU here" in proc.stderr and not any(tmp_path.iterdir())
