"""Base vs fine-tuned on lm-eval's own benchmark groups, with error bars and p-values: what
memorization cost in general ability. Writes compare.{md,csv,json}.

Suites (``--suite``, ``make compare COMPARE=...``) are lm-eval's task groups with their own
few-shot settings, plus the bios_qa family: ``tiny`` (tinyBenchmarks, ~100 items per
benchmark), ``openllm`` (Open LLM Leaderboard v1), ``leaderboard`` (v2), ``bios`` (bios_qa
only); ``--tasks`` names any lm-eval tasks or groups instead.

Every metric both result files share gets base, tuned, delta, both standard errors and a
p-value: a paired test on the per-item scores where both runs logged samples of the same
items (lm-eval's ``--log_samples``; the items are the same, so the test is paired): exact
McNemar for 0/1 scores (acc, exact_match), a paired t-test for other scores, a group's
subtasks' items pooled; else a two-sided z-test from the two standard errors. ``*`` marks p < 0.05, per metric, with no
correction for the number of metrics compared.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from engram_eval.lm_eval_args import model_args
from engram_run.runs import evaluation, launch
from engram_run.runs.recipes import RunError, load_recipe
from engram_run.runs.settings import Run

BIOS_TASKS = evaluation.EVAL_TASKS
SUITES = {"tiny": ("tinyBenchmarks",), "openllm": ("openllm",), "leaderboard": ("leaderboard",), "bios": ()}
ALPHA = 0.05
COLUMNS = [
    "task",
    "metric",
    "base",
    "base_stderr",
    "tuned",
    "tuned_stderr",
    "delta",
    "p_value",
    "test",
    "n",
    "significant",
]


def suite_tasks(suite: str, tasks: list[str] | None = None) -> list[str]:
    """The bios_qa family and the suite's lm-eval group, or exactly ``tasks`` when given."""
    if tasks:
        return list(dict.fromkeys(tasks))
    if suite not in SUITES:
        raise RunError(f"unknown COMPARE={suite}; choose from {', '.join(SUITES)} (or name tasks with COMPARE_TASKS)")
    return [*BIOS_TASKS, *SUITES[suite]]


def check_tasks(tasks: list[str]) -> None:
    """Every name is a task or group lm-eval knows (ours included), before any model runs."""
    from lm_eval.tasks import TaskManager

    from lm_eval_tasks import TASKS_DIR

    known = TaskManager(include_path=str(TASKS_DIR))
    unknown = [t for t in tasks if t not in known.all_tasks and t not in known.all_groups]
    if unknown:
        raise RunError(f"lm-eval has no task or group {unknown[0]!r}; `lm_eval ls tasks` lists them")


@dataclass
class Side:
    """One model's lm-eval output: the newest result file and the samples logged with it."""

    path: Path
    results: dict
    samples: dict[str, Path] = field(default_factory=dict)  # task -> samples_<task>_<datetime>.jsonl

    @classmethod
    def load(cls, path: Path) -> Side:
        """``path``: a results_*.json, or a folder lm-eval wrote into (its newest run)."""
        from lm_eval.utils import get_file_datetime, get_sample_results_filenames, sanitize_task_name

        path = Path(path)
        if path.is_dir():
            found = evaluation.latest_results(path)
            if found is None:
                raise RunError(f"no lm-eval results_*.json under {path}; run the evaluation first")
            path = found
        data = evaluation.read_results(path)
        stamp = path.name.removesuffix(".json").rsplit("_", 1)[-1]
        files = get_sample_results_filenames([str(p) for p in path.parent.glob("samples_*.jsonl")])
        by_name = {
            Path(f).name.removeprefix("samples_").rsplit("_", 1)[0]: Path(f)
            for f in files
            if get_file_datetime(Path(f).name) == stamp
        }
        samples = {t: by_name[sanitize_task_name(t)] for t in data["results"] if sanitize_task_name(t) in by_name}
        return cls(path, data, samples)

    @property
    def name(self) -> str:
        """The model lm-eval names in the file, else the file's name."""
        return str(self.results.get("model_name") or self.path.stem)


def item_scores(path: Path, metric: str, filt: str) -> dict[int, tuple[str, float]]:
    """doc_id -> (doc_hash, score) of one metric and filter in an lm-eval samples file."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row.get("filter") == filt and isinstance(row.get(metric), (int, float, bool)):
                out[row["doc_id"]] = (row.get("doc_hash", ""), float(row[metric]))
    return out


def paired_test(base: list[float], tuned: list[float]) -> tuple[float | None, str]:
    """Two-sided p-value for per-item scores of the same items, and the test's name: exact
    McNemar (a binomial test on the items only one side got right) for 0/1 scores such as
    acc, a paired t-test otherwise (None when every item changed by the same amount)."""
    from scipy import stats

    if set(base) | set(tuned) <= {0.0, 1.0}:
        gained = sum(1 for b, t in zip(base, tuned) if t > b)
        lost = sum(1 for b, t in zip(base, tuned) if t < b)
        if not gained + lost:
            return 1.0, "McNemar exact"
        return float(stats.binomtest(gained, gained + lost, 0.5).pvalue), "McNemar exact"
    diffs = [t - b for b, t in zip(base, tuned)]
    if not any(diffs):
        return 1.0, "paired t-test"
    if len(set(diffs)) == 1:
        return None, "paired t-test"
    return float(stats.ttest_rel(tuned, base).pvalue), "paired t-test"


def z_test(delta: float, base_se: float | None, tuned_se: float | None) -> float | None:
    """Two-sided p-value of delta / sqrt(se_b² + se_t²); None without standard errors."""
    if base_se is None or tuned_se is None or math.hypot(base_se, tuned_se) == 0:
        return None
    return math.erfc(abs(delta) / math.hypot(base_se, tuned_se) / math.sqrt(2))


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _items(side: Side, task: str, metric: str, filt: str) -> dict | None:
    """(task, doc_id) -> (doc_hash, score) of a task, or of every subtask of a group (its
    items pooled); None unless every one of them logged samples."""
    tasks = side.results.get("group_subtasks", {}).get(task) or [task]
    if not all(t in side.samples for t in tasks):
        return None
    return {(t, d): v for t in tasks for d, v in item_scores(side.samples[t], metric, filt).items()}


def compare_results(base: Side, tuned: Side) -> list[dict]:
    """One row per (task, metric, filter) both runs report as a number."""
    rows = []
    for task in sorted(set(base.results["results"]) & set(tuned.results["results"])):
        b, t = base.results["results"][task], tuned.results["results"][task]
        for key in sorted(b):
            metric, _, filt = key.partition(",")
            if not filt or "_stderr" in metric or _number(b[key]) is None or _number(t.get(key)) is None:
                continue
            row = {
                "task": task,
                "metric": metric if filt == "none" else f"{metric} ({filt})",
                "base": _number(b[key]),
                "tuned": _number(t[key]),
                "base_stderr": _number(b.get(f"{metric}_stderr,{filt}")),
                "tuned_stderr": _number(t.get(f"{metric}_stderr,{filt}")),
            }
            row["delta"] = row["tuned"] - row["base"]
            row["p_value"], row["test"], row["n"] = None, "none", None
            bs, ts = _items(base, task, metric, filt), _items(tuned, task, metric, filt)
            same = [k for k in sorted(set(bs or {}) & set(ts or {})) if bs[k][0] == ts[k][0]]  # same item and text
            if same:
                row["p_value"], row["test"] = paired_test([bs[k][1] for k in same], [ts[k][1] for k in same])
                row["n"] = len(same)
            if row["p_value"] is None:
                z = z_test(row["delta"], row["base_stderr"], row["tuned_stderr"])
                if z is not None:
                    row["p_value"], row["test"], row["n"] = z, "z-test (stderr)", None
            row["significant"] = row["p_value"] is not None and row["p_value"] < ALPHA
            rows.append(row)
    return rows


def _pm(value: float | None, se: float | None) -> str:
    return f"{value:.4f}" + (f" ± {se:.4f}" if se is not None else "")


def write_comparison(rows: list[dict], out: Path, base_name: str, tuned_name: str, samples=None, forgot=None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(rows, indent=2) + "\n")
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame.to_csv(out / "compare.csv", index=False)
    shown = pd.DataFrame(
        {
            "task": frame["task"],
            "metric": frame["metric"],
            "base": [_pm(v, s) for v, s in zip(frame["base"], frame["base_stderr"])],
            "fine-tuned": [_pm(v, s) for v, s in zip(frame["tuned"], frame["tuned_stderr"])],
            "delta": [f"{d:+.4f}" + (" *" if sig else "") for d, sig in zip(frame["delta"], frame["significant"])],
            "p": ["" if p is None or pd.isna(p) else f"{p:.3g}" for p in frame["p_value"]],
            "test": [f"{t}, n={int(n)}" if n and not pd.isna(n) else t for t, n in zip(frame["test"], frame["n"])],
        }
    )
    table = shown.to_markdown(
        index=False, disable_numparse=True, colalign=("left", "left", "right", "right", "right", "right", "left")
    )
    changed = int(frame["significant"].sum()) if len(frame) else 0
    md = [
        f"# {tuned_name} vs {base_name}",
        "",
        f"Value ± lm-eval's standard error; p: a paired test on the per-item scores where both runs logged the "
        f"same items (exact McNemar for 0/1 scores, a paired t-test otherwise; a group pools its subtasks' items), "
        f"else a z-test from the standard errors; `*` p < {ALPHA} ({changed} of {len(rows)} metrics; with "
        f"no correction for comparing {len(rows)} metrics, about {ALPHA * len(rows):.1f} would be marked by chance).",
        "",
        table,
        "",
    ]
    if samples:
        md += ["Per-item samples (lm-eval's `--log_samples`), to see exactly which facts changed:", ""]
        md += [f"- {side}: `{path}`" for side, paths in samples.items() for path in paths] + [""]
    if forgot is not None:  # engram_eval.forgetting's result: loss, KL, general prompts
        from engram_eval import forgetting  # torch: imported only here

        (out / "forgetting.json").write_text(json.dumps(forgot, indent=2) + "\n")
        md += forgetting.markdown(forgot, base_name, tuned_name)
    (out / "compare.md").write_text("\n".join(md))
    return out / "compare.md"


@dataclass(frozen=True)
class CompareOptions:
    tasks: tuple[str, ...] = (*BIOS_TASKS, *SUITES["tiny"])
    limit: int | None = None
    log_samples: bool = True
    apply_chat_template: bool = False
    fewshot_as_multiturn: bool = False
    hf_hub_log_args: str = ""

    def lm_eval_args(self) -> list[str]:
        """lm-eval's own flags, passed through (``--log_samples`` is log_samples)."""
        args = ["--apply_chat_template"] if self.apply_chat_template else []
        args += ["--fewshot_as_multiturn"] if self.fewshot_as_multiturn else []
        return args + (["--hf_hub_log_args", self.hf_hub_log_args] if self.hf_hub_log_args else [])


def compare(
    run: Run | None,
    data_dir: str | Path,
    options: CompareOptions = CompareOptions(),
    base_results: Path | None = None,
    tuned_results: Path | None = None,
) -> Path:
    """Score the base and the fine-tuned model of ``run`` (or read two lm-eval outputs: result
    files or the folders they are in) and write the comparison beside the tuned results; with a
    run, also what it forgot (engram_eval.forgetting: English-text loss and KL, general prompts)."""
    if options.fewshot_as_multiturn and not options.apply_chat_template:
        raise RunError("--fewshot-as-multiturn needs --apply-chat-template (lm-eval's rule); pass both, or CHAT=1")
    forgot = None
    if base_results and tuned_results:
        base, tuned = Side.load(base_results), Side.load(tuned_results)
        out, names = tuned.path.parent, (base.name, tuned.name)
    else:
        check_tasks(list(options.tasks))
        if not launch.is_trained(run.model_dir):
            raise RunError(f"{run.name} is not trained; run `make train MODEL={run.model}` first")
        base_model = load_recipe(run.recipe)["base_model"]
        out = run.results_dir / "compare"
        for side, margs in (
            ("base", f"pretrained={base_model},dtype=auto"),
            ("tuned", model_args(run.model_dir, base_model)),
        ):
            if not evaluation.evaluate(
                margs,
                data_dir,
                out / side,
                options.tasks,
                options.limit,
                extra=options.lm_eval_args(),
                log_samples=options.log_samples,
            ):
                raise RunError(f"lm-eval failed for the {side} model; see {out / side / 'eval.log'}")
        base, tuned = Side.load(out / "base"), Side.load(out / "tuned")
        names = (base_model, run.name)
        from engram_eval import forgetting

        forgot = forgetting.Reference.of(base_model).compare(run.model_dir)
    rows = compare_results(base, tuned)
    if not rows:
        raise RunError(f"{base.path} and {tuned.path} share no task metrics")
    samples = {
        side: sorted(str(p) for p in s.samples.values()) for side, s in (("base", base), ("tuned", tuned)) if s.samples
    }
    return write_comparison(rows, out, *names, samples=samples, forgot=forgot)
