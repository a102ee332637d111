"""Launching the tools: ``engram-data`` (generate_data.py) and ``axolotl train``, each as its own
process or, for a one-process run on a CPU, in the shared worker (worker.py); the folders a run
owns and whether it can resume. Evaluating with ``engram-eval`` is :mod:`engram_run.runs.evaluation`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from engram_data.run_files import PROGRESS_ENV, RECALL_HISTORY
from engram_run.runs import worker
from engram_run.runs.progress import TrainingWatch, run_watched
from engram_run.runs.recipes import RunError

DONE_FILE = ".engram_done"
MARKER = ".engram_run"  # in every folder engram_run creates: the only folders it ever deletes


def tool(name: str) -> str:
    """A console script of this environment (axolotl, engram-eval, accelerate)."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def tool_env(**extra: str) -> dict:
    env = {**os.environ, **extra}
    # axolotl launches `accelerate` by name: this environment's bin must be on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    # `accelerate launch` sets OMP_NUM_THREADS=1 unless it is set: on a CPU that leaves all
    # cores but one idle (half the speed on 2 cores). A GPU run is not changed.
    if "OMP_NUM_THREADS" not in env and not cuda():
        env["OMP_NUM_THREADS"] = str(os.cpu_count() or 1)
    return env


def generate_data(
    out: Path, people: int, seed: int = 0, variants: tuple[str, ...] = (), extra: tuple[str, ...] = ()
) -> None:
    """``engram-data`` (generate_data.py): a bioS population in ``out`` (with ``variants``, else
    the default ones), replacing only a previous output of it. Raises RunError with the tool's
    own error line."""
    cmd = [
        tool("engram-data"),
        "--num-people",
        str(people),
        "--seed",
        str(seed),
        "--out",
        str(out),
        "--overwrite",
        "--no-progress",
        *(["--variants", ",".join(variants)] if variants else []),
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=tool_env())
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        raise RunError(lines[-1])


def build_model(data_dir: Path, out: Path, log: Path, **sizes: int) -> Path:
    """``python -m engram_run.runs.tiny``: a random model and its tokenizer in ``out``, as its own
    process so that the libraries' import noise goes to ``log``, not the terminal."""
    cmd = [sys.executable, "-m", "engram_run.runs.tiny", "--data", str(data_dir), "--out", str(out)]
    for key, value in sizes.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=tool_env())
    if code != 0:
        lines = log.read_text().strip().splitlines() or [f"exit status {code}"]
        raise RunError(lines[-1])
    return out


def claim(folder: Path) -> Path:
    """Create ``folder`` (new, empty, or ours) and mark it as engram_run's."""
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not (folder / MARKER).exists())):
        raise RunError(f"{folder} exists and was not written by engram_run; move it away or choose another place")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("written by llm-engram's engram_run; it may replace this folder\n")
    return folder


def remove_own(folder: Path) -> None:
    """Delete ``folder`` only if engram_run wrote it (its marker is there)."""
    if not folder.exists():
        return
    if folder.is_symlink() or not (folder / MARKER).exists():
        raise RunError(f"{folder} exists and was not written by engram_run; move it away or choose another place")
    shutil.rmtree(folder)


def is_trained(model_dir: Path) -> bool:
    return (model_dir / DONE_FILE).exists()


CONFIG_SUM = ".engram_config_sha256"  # the config a run in this model folder started with


def config_sum(config: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(config).read_bytes()).hexdigest() + "\n"


def resumable(config: Path, model_dir: Path) -> Path | None:
    """The last complete checkpoint of an interrupted run of this same config in ``model_dir``
    (HF writes trainer_state.json last: a checkpoint without it was cut off mid-save and is
    removed, so nothing ever resumes from it), or None: a finished run, another config, none."""
    if is_trained(model_dir) or not (model_dir / CONFIG_SUM).exists():
        return None
    if (model_dir / CONFIG_SUM).read_text() != config_sum(config):
        print(f"[engram] {model_dir} holds a run of another config: starting over, not resuming", flush=True)
        return None
    complete = []
    for path in model_dir.glob("checkpoint-*"):
        if not path.name.split("-")[-1].isdigit():
            continue
        if (path / "trainer_state.json").exists():
            complete.append(path)
        else:
            print(f"[engram] removing {path.name}: cut off while it was saved", flush=True)
            shutil.rmtree(path, ignore_errors=True)
    return max(complete, key=lambda p: int(p.name.split("-")[-1]), default=None)


def start_over_unless_resumable(config: Path, model_dir: Path, force: bool = False) -> None:
    """Clear ``model_dir`` (a folder of ours) unless it holds an interrupted run of this very
    config, which ``train`` then resumes; ``force`` (FORCE=1) clears it always. Starting over
    also clears the config's ``dataset_prepared_path`` where it lies in our run folder:
    Axolotl names a prepared dataset by the config (paths, types), not by the files' content,
    and would train on the tokens of data since rewritten."""
    if model_dir.exists() and not force and resumable(config, model_dir) is not None:
        return
    import yaml

    prepared = Path((yaml.safe_load(Path(config).read_text()) or {}).get("dataset_prepared_path") or model_dir)
    run_dir = model_dir.parent.resolve()
    for folder in (model_dir, prepared) if (run_dir / MARKER).exists() else (model_dir,):
        if folder.is_dir() and folder.resolve().is_relative_to(run_dir) and folder.resolve() != run_dir:
            shutil.rmtree(folder)


def gpu_args(gpus: int) -> tuple[str, ...]:
    """``accelerate launch`` arguments for ``gpus`` processes (none for one)."""
    return ("--num_processes", str(gpus)) if gpus > 1 else ()


def train_command(config: Path, launcher_args: tuple[str, ...] | list[str] = ()) -> list[str]:
    """``axolotl train CONFIG [-- LAUNCHER_ARGS]``: what follows ``--`` goes to ``accelerate launch``.

    One process on a machine without CUDA trains in Axolotl's own process (``--launcher
    python``): there ``accelerate launch`` only adds two Python starts (its own and the
    training's), ~8 s of imports a run on 2 cores, and nothing else."""
    if not launcher_args and not cuda():
        return [tool("axolotl"), "train", "--launcher", "python", str(config)]
    return [tool("axolotl"), "train", str(config), *(["--", *launcher_args] if launcher_args else [])]


def train(config: Path, model_dir: Path, log: Path, launcher_args: tuple[str, ...] | list[str] = ()) -> bool:
    """``axolotl train CONFIG`` with its output in ``log`` and a progress bar here; True on
    success (and marks it done). ``launcher_args`` go to ``accelerate launch``, e.g.
    ``("--num_processes", "4")``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    progress_file = log.with_name("progress.json")
    env = tool_env(**{PROGRESS_ENV: str(progress_file)})
    watch = TrainingWatch(progress_file, model_dir / RECALL_HISTORY, enabled=sys.stdout.isatty())
    cmd = train_command(config, launcher_args)
    checkpoint = resumable(config, model_dir)
    if checkpoint is not None:  # Axolotl's own resume: weights, optimizer, scheduler, RNG, step
        print(f"[engram] resuming {model_dir} from {checkpoint.name} (FORCE=1 starts over)", flush=True)
        at = cmd.index(str(config)) + 1  # before a "--" that starts accelerate's arguments
        cmd[at:at] = ["--resume-from-checkpoint", str(checkpoint)]
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / CONFIG_SUM).write_text(config_sum(config))
    code = run_here(cmd, log, env, watch) if cmd[2:4] == ["--launcher", "python"] else run_watched(cmd, log, env, watch)
    progress_file.unlink(missing_ok=True)
    if code == 0:
        (model_dir / DONE_FILE).write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
    elif "No space left on device" in log.read_text(errors="replace"):
        full_disk(config, model_dir)
    return code == 0


def full_disk(config: Path, model_dir: Path) -> None:
    """One line for a run the disk stopped: the folder, the space a checkpoint needs, the free
    space, and what a rerun resumes from (a checkpoint cut off mid-save is removed now)."""
    last = resumable(config, model_dir)
    sizes = [sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) for p in model_dir.glob("checkpoint-*")]
    need, free = max(sizes, default=0), shutil.disk_usage(model_dir).free
    again = f"resumes from {last.name}" if last else "starts over (no complete checkpoint)"
    print(
        f"[engram] {model_dir}: the disk is full (No space left on device while saving); a checkpoint needs "
        f"{need / 2**20:,.1f} MiB and {free / 2**20:,.1f} MiB are free there: free space and run the same "
        f"command again, it {again}",
        flush=True,
    )


def run_here(cmd: list[str], log: Path, env: dict, watch) -> int:
    """A one-process CPU run in the shared worker (the libraries imported once for all of this
    process's runs; see worker.py), or as its own process where ``ENGRAM_WORKER=0``."""
    if not worker.enabled():
        return run_watched(cmd, log, env, watch)
    log.parent.mkdir(parents=True, exist_ok=True)
    return worker.SHARED.run(cmd, log, env, watch)


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()
