"""``make localize MODEL=...``: engram-localize's five analyses on a trained run, its base
model against what training wrote (a full model or a LoRA adapter), into
``results/<run>/localize/`` with ``summary.md``. ``MODEL=demo`` takes ``make demo``'s run
(``outputs/demo/init`` against ``outputs/demo/model``, data ``data/demo``)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from engram_run.runs import launch
from engram_run.runs.recipes import DEFAULT_DATA_DIR, RunError, load_recipe
from engram_run.runs.settings import Run

STEPS = ("diff", "graft", "prune", "trace", "probe")


@dataclass(frozen=True)
class LocalizeSettings:
    fractions: str = "0,0.001,0.01,0.1,0.3,1"
    scope: str = "global"
    trace_limit: int = 20  # questions traced per field
    eval_limit: int | None = None  # questions scored per field and set for graft/prune
    steps: tuple[str, ...] = STEPS
    variant: str = "bioS"  # the biographies the probe reads: the run's own variant


def endpoints(
    model: str, method: str | None, variant: str, data_dir: str | Path | None, outputs: Path, results: Path
) -> tuple[str, Path, Path, Path]:
    """(base, tuned, data, out) of a run; data by default the run's own (data/demo or data/bios)."""
    if model == "demo":
        base, tuned = outputs / "demo" / "init", outputs / "demo" / "model"
        if not launch.is_trained(tuned):
            raise RunError(f"{tuned} is not a finished demo run; run `make demo` first")
        return str(base), tuned, Path(data_dir or "data/demo"), results / "demo" / "localize"
    run = Run.resolve(model, method, variant, outputs=outputs, results=results)
    if not launch.is_trained(run.model_dir):
        raise RunError(f"{run.name} is not trained; run `make train MODEL={model}` first")
    data = Path(data_dir or DEFAULT_DATA_DIR)
    return load_recipe(run.recipe)["base_model"], run.model_dir, data, run.results_dir / "localize"


def localize(base: str, tuned: Path, data: Path, out: Path, s: LocalizeSettings = LocalizeSettings()) -> Path:
    """Run each step as its own ``engram-localize`` process (its progress on this terminal)."""
    for step in s.steps:
        if step == "diff":
            args = ["--base", base, "--tuned", str(tuned)]
        elif step in ("trace", "probe"):
            args = ["--model", str(tuned), "--data", str(data)]
            args += ["--limit", str(s.trace_limit)] if step == "trace" else ["--variant", s.variant]
            args += ["--base", base] if (tuned / "adapter_config.json").exists() else []
        else:
            args = [
                "--base",
                base,
                "--tuned",
                str(tuned),
                "--data",
                str(data),
                "--fractions",
                s.fractions,
                "--scope",
                s.scope,
                *(["--limit", str(s.eval_limit)] if s.eval_limit else []),
            ]
        print(f"[localize] {step}", flush=True)
        cmd = [launch.tool("engram-localize"), step, *args, "--out", str(out), "--overwrite"]
        if subprocess.run(cmd, env=launch.tool_env()).returncode != 0:
            raise RunError(f"engram-localize {step} failed (its error is above)")
    return out / "summary.md"
