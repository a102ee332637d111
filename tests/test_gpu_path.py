"""The recipes on the users' path, checked on a CPU: validated as `axolotl train` validates
them on a bf16 GPU, with the attention patch of Axolotl's LoRA kernels; the effective batch on
1, 2 and 8 GPUs; fp32 master weights that keep every update; QLoRA scored on its 4-bit base;
parameter counts under ZeRO-3 and 4-bit weights."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from helpers.common import REPO, family_of

from engram_run.runs.recipe_check import gpu_check, recipe_gpus
from engram_run.runs.recipes import RECIPES_DIR, RunError, for_gpus, load_recipe, recipe_path, validate

RECIPES = sorted(p for p in RECIPES_DIR.glob("*.yml") if p.stem != "tiny-full")
KERNELS = ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel")


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_takes_the_gpu_path_on_a_tiny_model_of_its_architecture(recipe, tiny_models):
    cfg = load_recipe(recipe)
    resolved = gpu_check(cfg, recipe_gpus(recipe), model_dir=tiny_models[family_of(cfg)])
    assert resolved["bf16"] is True and str(resolved["torch_dtype"]) == "torch.bfloat16"
    if cfg.get("adapter"):
        # Axolotl's kernels where its attention patch works (it was applied above), off elsewhere.
        on = family_of(cfg) == "llama"
        assert all(bool(resolved[k]) is on for k in KERNELS), {k: resolved[k] for k in KERNELS}
        assert all(cfg.get(k) is (None if on else False) for k in KERNELS)


@pytest.mark.parametrize("name", ["gpt2-lora", "gptj6b", "neox20b", "olmo2-7b"])
def test_unset_kernels_stop_a_non_llama_recipe_as_they_would_on_a_gpu(name, tiny_models):
    cfg = {k: v for k, v in load_recipe(recipe_path(name)).items() if not k.endswith("_kernel")}
    with pytest.raises(RunError, match="cannot patch .*Attention: Original QKV code not found; set lora_qkv_kernel"):
        gpu_check(cfg, 1, model_dir=tiny_models[family_of(cfg)])


def test_the_recipe_check_runs_the_gpu_path(tmp_path):
    bad = tmp_path / "gpt2-lora.yml"
    bad.write_text("".join(line for line in open(RECIPES_DIR / "gpt2-lora.yml") if "_kernel:" not in line))
    proc = subprocess.run(
        [sys.executable, "-m", "engram_run.runs.recipe_check", str(RECIPES_DIR / "llama3b-lora.yml"), str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("ok", "FAILED"))]
    assert lines[0].endswith("llama3b-lora.yml (GPU: bf16, 1 process(es), LoRA kernels on)")
    assert lines[1].startswith(f"FAILED  {bad}: Axolotl's fused LoRA kernels (auto-enabled on a GPU) cannot patch")


# --------------------------------------------------------------------------- the effective batch


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_the_effective_batch_is_a_recipe_constant_on_1_2_and_8_gpus(recipe):
    cfg = load_recipe(recipe)
    stated = cfg["engram_effective_batch"]
    assert stated == 8 and cfg["micro_batch_size"] * cfg["gradient_accumulation_steps"] == stated
    for n in (1, 2, 8):
        derived = for_gpus(cfg, n)  # what `make train GPUS=n` writes into the run's config
        micro, accum = derived["micro_batch_size"], derived["gradient_accumulation_steps"]
        assert micro * accum * n == stated, (n, micro, accum)
        assert micro == min(cfg["micro_batch_size"], stated // n)  # the recipe's micro batch wherever it fits
        # ...and what the plugin derives in each process of `axolotl train ... --num_processes n` alike.
        validated = validate(cfg, gpus=n)
        assert (validated["micro_batch_size"], validated["gradient_accumulation_steps"]) == (micro, accum)


def test_a_batch_that_cannot_be_split_is_refused_in_one_line():
    cfg = load_recipe(RECIPES_DIR / "llama3b-lora.yml")
    with pytest.raises(RunError) as err:
        for_gpus(cfg, 3)
    message = str(err.value)
    assert "\n" not in message and message.startswith("GPUS=3: the effective batch 8 cannot be split over 3 GPUs")
    assert "(1, 2, 4, 8)" in message
    with pytest.raises(RunError, match="cannot be split over 3 GPUs"):
        validate(cfg, gpus=3)


def test_make_train_launches_n_processes(tmp_path):
    proc = subprocess.run(
        ["make", "-n", "train", "MODEL=llama8b", "METHOD=full", "GPUS=4"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "--gpus 4" in proc.stdout
    default = subprocess.run(["make", "-n", "train", "MODEL=llama3b"], cwd=REPO, capture_output=True, text=True)
    assert "--gpus 1" in default.stdout
    from engram_run.runs.launch import gpu_args, train_command

    assert train_command(tmp_path / "c.yml", gpu_args(4))[-3:] == ["--", "--num_processes", "4"]
    assert gpu_args(1) == ()


def test_one_process_trains_in_axolotls_own_process_only_without_cuda(tmp_path, monkeypatch):
    """On a CPU `accelerate launch` only adds two Python starts: one process trains through
    `--launcher python`; on a GPU box (and for several processes) Axolotl's accelerate path."""
    from engram_run.runs import launch

    config = tmp_path / "c.yml"
    monkeypatch.setattr(launch, "cuda", lambda: False)
    assert launch.train_command(config)[1:] == ["train", "--launcher", "python", str(config)]
    assert launch.train_command(config, launch.gpu_args(2))[1:] == ["train", str(config), "--", "--num_processes", "2"]
    monkeypatch.setattr(launch, "cuda", lambda: True)
    assert launch.train_command(config)[1:] == ["train", str(config)]


# --------------------------------------------------------------------------- precision


def one_step_changed(recipe_name: str, tiny_models, upcast: bool) -> float:
    """Load the tiny model of the recipe's architecture as Axolotl loads it on a bf16 GPU
    (its ModelLoader with the resolved config: bf16, embeddings upcast to fp32), keep fp32
    masters if ``upcast``, take one optimizer step at the recipe's rate and optimizer; the
    share of the weights loaded in bf16 that changed."""
    from axolotl.loaders import ModelLoader, load_tokenizer
    from transformers import Trainer, TrainingArguments

    from engram_plugin.plugin import upcast_trainable

    cfg = load_recipe(recipe_path(recipe_name))
    resolved = gpu_check(cfg, 1, model_dir=tiny_models[family_of(cfg)])
    resolved["device_map"] = "cpu"
    resolved["engram_recall_eval"] = False  # no data to check: this is the model alone
    resolved["attn_implementation"] = "eager"  # flash-attention is CUDA-only; the weights are the same
    resolved.pop("deepspeed", None)
    resolved.pop("fsdp_config", None)
    resolved.pop("fsdp_version", None)
    model, _ = ModelLoader(resolved, load_tokenizer(resolved)).load()
    loaded_bf16 = {id(p) for p in model.parameters() if p.dtype == torch.bfloat16}
    assert len(loaded_bf16) > len(list(model.parameters())) / 2  # as Axolotl loads it
    if upcast:
        upcast_trainable(model)
    args = TrainingArguments(
        output_dir="/nonexistent",
        optim=cfg["optimizer"],
        learning_rate=cfg["learning_rate"],
        weight_decay=cfg["weight_decay"],
        use_cpu=True,
        report_to=[],
    )
    opt_cls, opt_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    params = [p for p in model.parameters() if p.requires_grad and id(p) in loaded_bf16]
    optimizer = opt_cls(params, **opt_kwargs)
    before = [p.detach().clone() for p in params]
    torch.manual_seed(0)
    for p in params:  # a gradient for every weight (Adam's first step moves each by ~lr, whatever its size)
        p.grad = (torch.randn(p.shape) * 1e-3).to(p.dtype)
    optimizer.step()
    changed = moved = 0
    for p, b in zip(params, before):
        moved += p.numel()
        changed += int((p.detach() != b).sum())
    return changed / moved


FULL = sorted(p.stem for p in RECIPES if not load_recipe(p).get("adapter"))


@pytest.mark.parametrize("name", FULL)
def test_full_fine_tuning_keeps_every_update(name, tiny_models):
    cfg = load_recipe(recipe_path(name))
    sharded = bool(cfg.get("deepspeed") or cfg.get("fsdp_version"))
    # The plugin's fp32 masters where Axolotl trains the loaded weights; DeepSpeed's and FSDP2's
    # own fp32 masters (accelerate upcasts the trained parameters the same way) elsewhere.
    assert cfg.get("engram_fp32_master_weights", False) is not sharded
    assert one_step_changed(name, tiny_models, upcast=True) >= 0.99
    if name in ("gpt2", "llama1b", "neox20b-full"):  # the failure it prevents, at 5e-5, 2e-5, 5e-6
        # Pure bf16 (as Axolotl would train): measured 0.67 changed at 5e-5, 0.08 at 5e-6.
        assert one_step_changed(name, tiny_models, upcast=False) < 0.75


def test_fp32_masters_are_for_full_fine_tuning_without_sharding():
    lora = load_recipe(RECIPES_DIR / "llama3b-lora.yml") | {"engram_fp32_master_weights": True}
    with pytest.raises(RunError, match="peft already keeps LoRA weights in fp32"):
        validate(lora)
    ds = load_recipe(RECIPES_DIR / "gptj6b-full.yml") | {"engram_fp32_master_weights": True}
    with pytest.raises(RunError, match="not needed with DeepSpeed or FSDP"):
        validate(ds)


# --------------------------------------------------------------------------- QLoRA and capacity


def test_qlora_is_scored_on_the_4_bit_base_it_trained_on(tiny_models, tmp_path):
    from axolotl.utils.dict import DictDefault
    from lm_eval.models.huggingface import HFLM
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engram_eval.lm_eval_args import model_args, qlora_quantization
    from engram_plugin.plugin import post_eval_command
    from lm_eval_tasks.cli import add_4bit_loading

    recipe = load_recipe(RECIPES_DIR / "llama8b-qlora.yml")
    expected = {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
        "bnb_4bit_compute_dtype": "bfloat16",
    }
    assert qlora_quantization(recipe) == expected
    assert qlora_quantization(load_recipe(RECIPES_DIR / "llama8b-lora.yml")) is None
    adapter = tmp_path / "adapter"
    base = AutoModelForCausalLM.from_pretrained(tiny_models["llama"])
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    cfg = DictDefault(dict(validate(recipe)))
    cfg["base_model"], cfg["torch_dtype"] = str(tiny_models["llama"]), torch.float32
    cmd = post_eval_command(cfg, adapter)
    margs = cmd[cmd.index("--model_args") + 1]
    assert margs == model_args(adapter, str(tiny_models["llama"]), quantization=qlora_quantization(cfg, "float32"))
    assert "load_in_4bit=True,bnb_4bit_quant_type=nf4,bnb_4bit_use_double_quant=True" in margs
    add_4bit_loading()  # engram-eval's: lm-eval's load_in_4bit as transformers 5 takes it
    lm = HFLM.create_from_arg_string(margs, {"device": "cpu", "batch_size": 2})
    kinds = {type(m).__name__ for m in lm.model.modules()}
    assert "Linear4bit" in kinds and any("lora" in n for n, _ in lm.model.named_parameters())


def test_capacity_counts_parameters_under_zero3_and_4_bit():
    import bitsandbytes as bnb

    from engram_eval.params import numel

    full = torch.nn.Parameter(torch.zeros(64, 32))
    assert numel(full) == 2048
    zero3 = torch.nn.Parameter(torch.empty(0))  # a ZeRO-3 rank's placeholder
    zero3.ds_numel = 2048
    assert numel(zero3) == 2048
    packed = bnb.nn.Params4bit(torch.randn(64, 32), requires_grad=False, quant_type="nf4")
    packed = packed._quantize("cpu") if hasattr(packed, "_quantize") else packed.to("cpu")
    assert packed.numel() == 1024 and numel(packed) == 2048  # two 4-bit values a byte


def test_slurm_jobs_get_one_gpu_unless_told_and_local_runs_none():
    from types import SimpleNamespace

    from engram_run.tuning.sweep_cli import sweep_settings

    base = dict(
        slurm_args="",
        partition=None,
        cpus=None,
        mem_gb=None,
        time_min=60,
        parallel=None,
        set=[],
        model="tiny",
        name=None,
        method=None,
        variant="bioS",
        data_dir="d",
        keep_models=False,
        outputs="o",
        results="r",
    )
    for executor, gpus, expected in (
        ("slurm", None, 1),
        ("slurm", 4, 4),
        ("local", None, 0),
        ("submitit-local", None, 0),
    ):
        _, settings = sweep_settings(SimpleNamespace(**base, executor=executor, gpus=gpus))
        assert settings.gpus == expected, executor


def test_install_gpu_says_what_to_install_first_on_a_box_without_cuda():
    proc = subprocess.run(["make", "install-gpu"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0
    line = next(x for x in proc.stderr.splitlines() if x.startswith("install-gpu:"))
    assert "has no CUDA. First:" in line and "pip install torch==2.13.0" in line and "then run make install-gpu" in line


def test_only_the_local_targets_are_offline():
    """Training and evaluating a recipe downloads its base model the first time; the tests,
    the demo, the tiny model, the CPU studies and the benchmarks build everything here."""
    import os
    import re

    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}  # as a user's shell
    db = subprocess.run(["make", "-p", "-n", "help"], cwd=REPO, capture_output=True, text=True, env=env).stdout
    offline = set(re.findall(r"^([\w-]+): HF_HUB_OFFLINE = 1$", db, re.M))
    assert offline == {
        "test",
        "test-real",
        "test-fast",
        "lint",
        "pretrained",
        "floors",
        "finetune-study",
        "bench-gpu-plain",
        "demo",
        "tiny-model",
        "capacity",
        "reversal",
        "probe",
        "corpus-study",
        "bench",
        "bench-gpu",
        "recipes",
    }
    assert not re.search(r"^(export )?HF_HUB_OFFLINE", db, re.M)  # nothing global
