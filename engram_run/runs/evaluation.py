"""Evaluating with ``engram-eval`` (lm-eval with llm-engram's tasks): the command, run in the
shared worker on a CPU or as its own process, an adapter merged first where a backend needs one
folder, and lm-eval's result files found and read."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from engram_data.contract import DEFAULT_TASKS
from engram_eval.lm_eval_args import eval_metadata
from engram_run.runs import launch
from engram_run.runs.progress import LmEvalWatch, run_watched
from engram_run.runs.recipes import RunError

EVAL_TASKS = DEFAULT_TASKS


def eval_command(
    model_args: str,
    data_dir: str | Path,
    out: Path,
    tasks=EVAL_TASKS,
    limit: int | None = None,
    backend: str = "hf",
    batch_size: int | str = 32,
    device: str | None = None,
    extra: list[str] | None = None,
    log_samples: bool | None = None,
) -> list[str]:
    """``engram-eval`` (lm_eval with our tasks) with lm-eval's own model choice and arguments;
    ``extra``: more lm-eval flags, as lm-eval spells them. ``log_samples`` (lm-eval's
    ``--log_samples``) is on by default whenever a bios_qa task runs: which facts, exactly."""
    cmd = [
        eval_tool(backend),
        "--model",
        backend,
        "--model_args",
        model_args,
        "--tasks",
        ",".join(tasks),
        "--metadata",
        json.dumps(eval_metadata(data_dir)),
        "--output_path",
        str(out),
        "--batch_size",
        str("auto" if backend == "vllm" else batch_size),
    ]
    if backend == "hf":  # vLLM places the model itself
        cmd += ["--device", device or ("cuda" if launch.cuda() else "cpu")]
    if limit:
        cmd += ["--limit", str(limit)]
    if log_samples is None:
        log_samples = any(t.startswith("bios_qa") for t in tasks)
    return cmd + (["--log_samples"] if log_samples else []) + list(extra or [])


def eval_tool(backend: str = "hf") -> str:
    """``engram-eval`` of this environment, or for vLLM that of ``make install-vllm``'s own
    environment (``ENGRAM_VLLM_VENV``, default .venv-vllm) unless vLLM is installed here."""
    if backend != "vllm":
        return launch.tool("engram-eval")
    other = Path(os.environ.get("ENGRAM_VLLM_VENV", ".venv-vllm")) / "bin" / "engram-eval"
    if other.exists():
        return str(other)
    if importlib.util.find_spec("vllm") is not None:
        return launch.tool("engram-eval")
    raise RunError(
        f"MODEL_BACKEND=vllm needs vLLM, which is in neither this environment nor {other.parent.parent}: "
        "run make install-vllm first"
    )


def merge_lora(config: Path, model_dir: Path, log: Path) -> Path:
    """``axolotl merge-lora CONFIG``: the base model with the adapter merged in, for
    backends that take one folder; returns ``model_dir/merged``."""
    with log.open("w") as f:
        code = subprocess.call(
            [launch.tool("axolotl"), "merge-lora", str(config)],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=launch.tool_env(),
        )
    merged = model_dir / "merged"
    if code != 0 or not merged.is_dir():
        raise RunError(f"axolotl merge-lora failed for {config}; see {log}")
    return merged


def saves_modules(model_dir: Path) -> bool:
    """An adapter that trains whole modules beside its low-rank ones (``lora_modules_to_save``,
    e.g. the embeddings): lm-eval's hf model loads it with peft and then re-ties the
    embeddings, which fails (transformers: "attribute 'weight' already exists"), so it is
    scored merged."""
    config = Path(model_dir) / "adapter_config.json"
    return config.exists() and bool(json.loads(config.read_text()).get("modules_to_save"))


def merge_adapter(adapter_dir: Path, base_model: str, out: Path) -> Path:
    """The adapter in ``adapter_dir`` merged into ``base_model`` (peft's merge_and_unload),
    saved with the adapter's tokenizer in ``out`` (replaced only if ours); returns ``out``."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    launch.remove_own(out)
    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    tmp = out.with_name(out.name + ".tmp")
    launch.remove_own(tmp)
    launch.claim(tmp)
    merged.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(
        adapter_dir if (Path(adapter_dir) / "tokenizer_config.json").exists() else base_model
    ).save_pretrained(tmp)
    tmp.rename(out)
    return out


def evaluate(
    model_args: str,
    data_dir: str | Path,
    out: Path,
    tasks=EVAL_TASKS,
    limit: int | None = None,
    backend: str = "hf",
    log: Path | None = None,
    extra: list[str] | None = None,
    log_samples: bool | None = None,
) -> bool:
    """``engram-eval`` into ``out``, in lm-eval's own JSON format (and samples files)."""
    launch.claim(out)
    cmd = eval_command(model_args, data_dir, out, tasks, limit, backend, extra=extra, log_samples=log_samples)
    log = log or out / "eval.log"
    watch = LmEvalWatch(log, enabled=sys.stdout.isatty())
    if backend == "hf" and not launch.cuda():
        return launch.run_here(cmd, log, launch.tool_env(), watch) == 0
    return run_watched(cmd, log, launch.tool_env(), watch) == 0


def read_results(path: Path) -> dict:
    """An lm-eval result file; RunError naming it if it is missing, cut or not lm-eval's."""
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except OSError as exc:
        raise RunError(
            f"cannot read the lm-eval result file {path} ({exc.strerror or exc}); pass an existing file"
        ) from None
    except ValueError as exc:
        raise RunError(f"{path} is not valid JSON ({exc}); it was cut or edited: rerun the evaluation") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise RunError(f"{path} has no 'results' mapping: it is not an lm-eval result file; rerun the evaluation")
    return data


def latest_results(run_dir: Path) -> Path | None:
    """The newest ``results_<datetime>.json`` lm-eval wrote under ``run_dir`` (its own lookup)."""
    from lm_eval.utils import get_latest_filename, get_results_filenames

    found = get_results_filenames([str(p) for p in run_dir.rglob("results_*.json")])
    return Path(get_latest_filename(found)) if found else None
