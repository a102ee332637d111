"""engram_run's shared worker (engram_run/runs/worker.py): a run trained in it is the run its
own process would train, a failed run fails alone, and a worker that dies with a run is
replaced for the next."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def short_config(bios_dir: Path, tiny_llama: Path, out: Path, **extra) -> Path:
    from engram_run.runs.recipes import RECIPES_DIR, derive_config, write_config

    overrides = {
        "base_model": str(tiny_llama),
        "max_steps": 3,
        "engram_eval_samples": 4,
        "sample_packing": False,
        "engram_eval_heldout": False,
        "engram_eval_reverse": False,
        "save_strategy": "no",
        **extra,
    }
    cfg = derive_config(RECIPES_DIR / "tiny-full.yml", bios_dir, out / "model", None, overrides)
    return write_config(cfg, out / "config.yml")


@pytest.mark.slow
def test_a_run_in_the_worker_is_the_run_of_its_own_process_and_a_failure_stays_its_own(
    bios_dir, tiny_llama, tmp_path, monkeypatch
):
    from engram_run.runs import launch, worker

    runs = {}
    for name, flag in (("process", "0"), ("worker", "1")):
        monkeypatch.setenv(worker.WORKER_ENV, flag)
        config = short_config(bios_dir, tiny_llama, tmp_path / name)
        assert launch.train(config, tmp_path / name / "model", tmp_path / name / "train.log"), name
        runs[name] = tmp_path / name
    assert worker.SHARED.proc is not None and worker.SHARED.proc.poll() is None  # the worker stays for the next run
    # Seeded and in a fresh Axolotl run either way: the same weights, byte for byte.
    weights = [(r / "model" / "model.safetensors").read_bytes() for r in runs.values()]
    assert weights[0] == weights[1]
    log = (runs["worker"] / "train.log").read_text()
    assert "train_runtime" in log, log[-2000:]
    # The run's environment was its own (the progress file the caller watches), and is gone after it.
    assert "ENGRAM_PROGRESS" not in os.environ
    # A run that fails (no such base model) fails alone: its log says why, and the next one trains.
    bad = short_config(bios_dir, tmp_path / "no-such-model", tmp_path / "bad")
    assert not launch.train(bad, tmp_path / "bad" / "model", tmp_path / "bad" / "train.log")
    assert "no-such-model" in (tmp_path / "bad" / "train.log").read_text()
    assert not (tmp_path / "bad" / "model" / launch.DONE_FILE).exists()
    again = short_config(bios_dir, tiny_llama, tmp_path / "again")
    assert launch.train(again, tmp_path / "again" / "model", tmp_path / "again" / "train.log")
    assert (tmp_path / "again" / "model" / "model.safetensors").read_bytes() == weights[0]
    worker.SHARED.close()


class KillOnFirstPoll:
    """A progress watch that kills the worker the first time it is polled: a crash mid-run."""

    def __init__(self, w) -> None:
        self.w, self.killed = w, False

    def poll(self) -> None:
        if not self.killed:
            self.w.proc.kill()
            self.killed = True

    def close(self) -> None:
        pass


def test_a_worker_that_dies_with_a_run_fails_that_run_and_is_replaced(tmp_path):
    from engram_run.runs import launch, worker

    w = worker.Worker()
    help_cmd = [launch.tool("engram-eval"), "--help"]
    code = w.run(help_cmd, tmp_path / "crashed.log", launch.tool_env(), KillOnFirstPoll(w))
    assert code != 0
    assert "the worker process running this ended with exit status" in (tmp_path / "crashed.log").read_text()
    first = w.proc
    watch = KillOnFirstPoll(w)
    watch.killed = True  # polls and does nothing
    assert w.run(help_cmd, tmp_path / "help.log", launch.tool_env(), watch) == 0  # lm_eval --help exits 0
    assert w.proc is not first and "usage" in (tmp_path / "help.log").read_text()
    # An unknown tool is refused by the worker, not run.
    assert w.run(["python", "-c", "1"], tmp_path / "other.log", launch.tool_env(), watch) == 1
    assert "runs axolotl and engram-eval, not python" in (tmp_path / "other.log").read_text()
    w.close()
    assert w.proc is None


def test_a_worker_dies_with_the_process_that_started_it(tmp_path):
    """A study killed with SIGKILL (no atexit, no cleanup) leaves no worker training on. A worker
    mid-run does not read its stdin, so the closed pipe alone would not end it: here a sleeping
    grandchild holds the pipe open, as a run in progress would keep the worker busy."""
    import signal
    import subprocess
    import sys
    import time

    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "w = subprocess.Popen([sys.executable, '-m', 'engram_run.runs.worker'], stdin=subprocess.PIPE)\n"
            "s = subprocess.Popen(['sleep', '30'], pass_fds=[w.stdin.fileno()])\n"
            "print(w.pid, s.pid, flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    pid, holder = map(int, parent.stdout.readline().split())
    time.sleep(1)  # the worker has started and set its parent-death signal
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    try:
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"worker {pid} outlived its killed parent")
    finally:
        os.kill(holder, signal.SIGKILL)
