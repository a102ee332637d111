"""What a person watches while the tools run: a progress bar with an ETA for training (read
from the plugin's progress file) and for lm-eval (read from its own progress lines), and
one line per evaluation with the recall so far::

    epoch 4/12  recall 0.71  heldout 0.55  reverse 0.24

Everything the tools print themselves (library warnings included) goes to their log file.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

POLL_SECONDS = 0.5
_LM_EVAL_BAR = re.compile(rb"Running (?:loglikelihood|generate_until)[^\r\n]*?(\d+)/(\d+) \[")


def _epoch(epoch: float) -> str:
    """4, or 4.3 between whole epochs (evaluations more often than once an epoch)."""
    return f"{epoch:.0f}" if abs(epoch - round(epoch)) < 0.05 else f"{epoch:.1f}"


def recall_line(entry: dict, epochs: float | None, max_steps: int | None = None) -> str:
    """``epoch 4/12  recall 0.71  heldout 0.55  reverse 0.24`` (``untrained`` at step 0);
    ``step 500/2500 ...`` for a run that ``max_steps`` ends before its epochs."""
    if entry["step"] == 0:
        when = "untrained"
    elif max_steps:
        when = f"step {entry['step']}/{max_steps}"
    else:
        when = f"epoch {_epoch(entry.get('epoch') or 0)}" + (f"/{epochs:.0f}" if epochs else "")
    parts = [f"{when:<11}", f"recall {entry['eval_engram_qa_acc_overall']:.2f}"]
    for key, name in (("eval_engram_heldout_acc_overall", "heldout"), ("eval_engram_reverse_acc", "reverse")):
        if key in entry:
            parts.append(f"{name} {entry[key]:.2f}")
    return "  ".join(parts)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class TrainingWatch:
    """The training bar from ``progress`` (steps), the recall lines from ``history``."""

    def __init__(self, progress: Path, history: Path, enabled: bool = True):
        self.progress, self.history, self.shown, self.epochs, self.max_steps = progress, history, 0, None, None
        self.bar = tqdm(desc="train", unit="step", disable=not enabled, dynamic_ncols=True, file=sys.stdout)

    def poll(self) -> None:
        p = _read_json(self.progress)
        if isinstance(p, dict) and p.get("max_steps"):
            self.epochs = p.get("epochs")
            self.bar.total = p["max_steps"]
            self.bar.n = p["step"]
            # max_steps ends the run long before its epochs (make reproduce: one step budget)
            if self.epochs and p["step"] and p.get("epoch"):
                if self.epochs > 2 * p["epoch"] / p["step"] * p["max_steps"]:
                    self.max_steps = p["max_steps"]
            if not self.max_steps:
                self.bar.set_postfix_str(f"epoch {p.get('epoch') or 0:.1f}/{self.epochs:.0f}", refresh=False)
            self.bar.refresh()
        lines = self.history.read_text().splitlines() if self.history.exists() else []
        for line in lines[self.shown :]:
            try:
                self.bar.write(recall_line(json.loads(line), self.epochs, self.max_steps), file=sys.stdout)
            except (ValueError, KeyError):
                break  # a line being written: read it next time
            self.shown += 1

    def close(self) -> None:
        self.poll()
        self.bar.close()


class LmEvalWatch:
    """lm-eval's own request bar, read from its log as it grows."""

    def __init__(self, log: Path, enabled: bool = True):
        self.log, self.offset = log, 0
        self.bar = tqdm(desc="evaluate", unit="request", disable=not enabled, dynamic_ncols=True, file=sys.stdout)

    def poll(self) -> None:
        try:
            with self.log.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return
        found = _LM_EVAL_BAR.findall(chunk)
        if found:
            done, total = map(int, found[-1])
            self.bar.total, self.bar.n = total, done
            self.bar.refresh()
        # Keep the last partial line: a bar update may be cut between two reads.
        self.offset += max(chunk.rfind(b"\r"), chunk.rfind(b"\n"), 0)

    def close(self) -> None:
        self.poll()
        self.bar.close()


def run_watched(cmd: list[str], log: Path, env: dict, watch) -> int:
    """Run ``cmd`` with its output in ``log`` while ``watch`` shows progress; its exit status."""
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        try:
            while proc.poll() is None:
                time.sleep(POLL_SECONDS)
                watch.poll()
        except BaseException:
            proc.terminate()
            proc.wait()
            raise
        finally:
            watch.close()
    return proc.returncode
