"""The Axolotl plugin: ``plugins: [engram_plugin.EngramPlugin]``."""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import weakref
from pathlib import Path

import torch
from axolotl.integrations.base import BasePlugin

from engram_eval.recall import question_rows
from engram_plugin.callbacks import best_dirs, engram_callbacks
from engram_plugin.freeze import apply_freezing

LOG = logging.getLogger("engram_plugin")
LORA_KERNELS = ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "lora_embedding_kernel")


class EngramPlugin(BasePlugin):
    """Freezing, recall evaluation during training, best-checkpoint keeping, and an
    lm-eval run of the bios_qa family after training."""

    def __init__(self):
        super().__init__()
        # Weak references to what training holds in memory (trainer, model, optimizer): the
        # post-training lm-eval run loads the model again, and starts only once they are gone.
        self.held: dict[str, weakref.ref] = {}

    def get_input_args(self) -> str:
        return "engram_plugin.args.EngramArgs"

    def load_datasets(self, cfg, preprocess=False):
        """Loads nothing (Axolotl loads the data), but is the first hook of a training process.
        With engram_gc_freeze, what the imports left (every module, class and function of
        torch, transformers and Axolotl) is frozen here, before Axolotl prepares the data:
        its packing sampler counts the steps with several gc.collect() calls that would each
        walk it all again (~0.4 s each, ~5 s a run). The callback freezes again at train start
        and unfreezes at train end.

        It also seeds torch's global generator with the run's ``seed``: Axolotl counts a packed
        run's steps over an unseeded ``RandomSampler`` (the least of four random packings), and
        torch seeds its generator at random in every process, so without this the same config
        could train 114 steps in one run and 152 in the next (measured). And, before Axolotl
        patches the model, it turns off LoRA kernels a machine without a GPU cannot run."""
        if cfg.seed is not None:
            torch.manual_seed(cfg.seed)
        no_lora_kernels_without_a_gpu(cfg)
        if cfg.engram_gc_freeze and not preprocess:
            gc.collect()
            gc.freeze()
        return None

    def get_training_args(self, cfg) -> dict:
        """``bf16: true`` on a machine with no GPU: bf16 autocast on the CPU (its bf16 matrix
        units), which transformers runs only with ``use_cpu`` (Axolotl has no key for it)."""
        return {"use_cpu": True} if cfg.bf16 is True and not gpu_present() else {}

    def pre_model_load(self, cfg):
        if cfg.engram_effective_batch:
            n = max(cfg.batch_size // (cfg.micro_batch_size * cfg.gradient_accumulation_steps), 1)
            LOG.info(
                "engram: effective batch %d = micro batch %d x accumulation %d x %d data-parallel process(es)",
                cfg.batch_size,
                cfg.micro_batch_size,
                cfg.gradient_accumulation_steps,
                n,
            )
        if cfg.engram_recall_eval or cfg.engram_post_eval:
            qa = Path(cfg.engram_data_dir) / "qa"
            if not qa.is_dir():
                raise FileNotFoundError(
                    f"engram_data_dir {cfg.engram_data_dir} has no qa/ folder: run `make data` "
                    "or point engram_data_dir at a dataset written by generate_data.py"
                )
            sets = [
                "train",
                *(["heldout"] if cfg.engram_eval_heldout else []),
                *(["reverse"] if cfg.engram_eval_reverse else []),
            ]
            question_rows(cfg.engram_data_dir, sets)  # the version, counts and hashes, every row: before any work

    def post_model_load(self, cfg, model):
        # Early, so that a bad layer index fails before any data is processed.
        apply_freezing(model, cfg.engram_freeze_embeddings, cfg.engram_freeze_layers)

    def post_trainer_create(self, cfg, trainer):
        # Again after Axolotl has applied `unfrozen_parameters`, which would undo it.
        frozen = apply_freezing(trainer.model, cfg.engram_freeze_embeddings, cfg.engram_freeze_layers)
        if frozen:
            LOG.info("engram: %d parameter tensors frozen", len(frozen))
        if cfg.engram_fp32_master_weights:
            # Before the optimizer exists (created at train start), so its states are fp32 too.
            upcast = upcast_trainable(trainer.model)
            LOG.info("engram: %d trained parameter tensors kept in fp32 (bf16/fp16 autocast computes)", upcast)
        # In place: the callback (created before or after this hook) shares the dict.
        self.held.update(trainer=weakref.ref(trainer), model=weakref.ref(trainer.model))

    def add_callbacks_post_trainer(self, cfg, trainer):
        return engram_callbacks(cfg, trainer, held=self.held)

    def post_train_unload(self, cfg):
        """After the final model is saved and unloaded: score it with lm-eval (rank 0)."""
        if not cfg.engram_post_eval or int(os.environ.get("RANK", "0")) != 0:
            return
        note = released(self.held)
        model_dir = Path(cfg.output_dir)
        if cfg.engram_post_eval_model == "best":
            found = best_dirs(model_dir)
            if not found:
                LOG.warning("engram: no best_model_qa_* to evaluate; scoring the final model")
            else:
                model_dir = found[-1]
        run_post_eval(cfg, model_dir, note=note)


def upcast_trainable(model) -> int:
    """Trained parameters to fp32 in place (as accelerate's FSDP2 and DeepSpeed do for their
    master copies); frozen ones stay as loaded. Returns how many tensors changed."""
    count = 0
    for param in model.parameters():
        if param.requires_grad and param.is_floating_point() and param.dtype != torch.float32:
            param.data = param.data.to(torch.float32)
            count += 1
    return count


def released(held: dict[str, weakref.ref]) -> str:
    """Collect garbage and free the GPU cache, then say (and log) whether training's trainer,
    model and optimizer are gone (by weak reference) before the evaluation loads the model again."""
    gc.collect()
    alive = [name for name, ref in held.items() if ref() is not None]
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if alive:
        note = f"engram: still in memory when lm-eval started: {', '.join(alive)}"
        LOG.warning(note)
    else:
        note = f"engram: released before lm-eval started: {', '.join(held)}"
        LOG.info(note)
    return note


POST_EVAL_DIR = "lm_eval"  # beside the scored model: lm-eval's own results_*.json (and samples)
# Set by torchrun / accelerate for the training processes; the evaluation is one process.
_LAUNCHER_ENV = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "GROUP_WORLD_SIZE",
    "ROLE_RANK",
    "ROLE_WORLD_SIZE",
    "ROLE_NAME",
    "MASTER_ADDR",
    "MASTER_PORT",
)
_LAUNCHER_PREFIXES = ("TORCHELASTIC_", "ACCELERATE_", "FSDP_", "OMP_NUM_THREADS")


def post_eval_command(cfg, model_dir: Path) -> list[str]:
    """``engram-eval`` (lm_eval with our tasks) on ``model_dir``, writing beside it."""
    from engram_eval.lm_eval_args import eval_metadata, model_args, qlora_quantization

    cmd = [
        sys.executable,
        "-m",
        "lm_eval_tasks.cli",
        "--model",
        "hf",
        "--model_args",
        model_args(model_dir, cfg.base_model, quantization=qlora_quantization(cfg, cfg.torch_dtype)),
        "--tasks",
        ",".join(cfg.engram_post_eval_tasks),
        "--metadata",
        json.dumps(eval_metadata(cfg.engram_data_dir)),
        "--batch_size",
        str(cfg.engram_eval_batch_size),
        "--device",
        "cuda" if torch.cuda.is_available() else "cpu",
        "--output_path",
        str(model_dir / POST_EVAL_DIR),
    ]
    if cfg.engram_post_eval_limit:
        cmd += ["--limit", str(cfg.engram_post_eval_limit)]
    if cfg.engram_post_eval_log_samples:
        cmd += ["--log_samples"]
    return cmd


def run_post_eval(cfg, model_dir: Path, note: str = "") -> bool:
    """lm-eval on ``model_dir`` as its own process: a multi-process training's ranks and
    process group are gone by now, and lm-eval in this process would still see them."""
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCHER_ENV and not k.startswith(_LAUNCHER_PREFIXES)}
    log = model_dir / POST_EVAL_DIR / "eval.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        if note:  # what training still held in memory (weak references), first in the log
            f.write(note + "\n")
            f.flush()
        code = subprocess.call(post_eval_command(cfg, model_dir), stdout=f, stderr=subprocess.STDOUT, env=env)
    if code == 0:
        LOG.info("engram: lm-eval results written under %s", log.parent)
    else:
        LOG.error("engram: the post-training lm-eval run failed (exit %d); see %s", code, log)
    return code == 0


def no_lora_kernels_without_a_gpu(cfg) -> None:
    """Axolotl turns its Triton LoRA kernels on wherever ``lora_*_kernel`` is unset, on a CPU too,
    where they stop the run at the first forward pass (CUDA only). Turned off here, before
    Axolotl patches the attention for them, so that a LoRA recipe that keeps them for its GPUs
    runs as written on a CPU."""
    if cfg.adapter not in ("lora", "qlora") or gpu_present():
        return
    off = [k for k in LORA_KERNELS if cfg.get(k)]
    for key in off:
        cfg[key] = False
    if off:
        LOG.info("engram: no GPU here: %s off (Triton kernels, CUDA only)", ", ".join(off))


def gpu_present() -> bool:
    """A CUDA, XPU or MPS device that transformers would train on."""
    xpu = getattr(torch, "xpu", None)
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(xpu and xpu.is_available()) or bool(mps and mps.is_available())
