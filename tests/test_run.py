"""The main job end to end: the demo at a reduced size with a real accuracy bar,
train-all past a failing model, the report and the base-vs-tuned comparison built
from real lm-eval result files."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.common import REPO, cli_env

from engram_run.reports.compare import (
    CompareOptions,
    Side,
    check_tasks,
    compare_results,
    paired_test,
    suite_tasks,
    z_test,
)
from engram_run.reports.report import collect
from engram_run.runs.evaluation import eval_command, evaluate, latest_results
from engram_run.runs.recipes import RECIPES_DIR, RunError, derive_config

FIELDS = ("birth_date", "birth_city", "university", "major", "employer", "company_city")


def pipeline(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engram_run", *args], cwd=cwd, env=cli_env(), capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """`make demo`'s pipeline at a reduced size: 60 people, a 2-layer model, 16 epochs
    (batches of 4 packed rows: enough updates for so few people)."""
    root = tmp_path_factory.mktemp("demo")
    proc = pipeline(
        "demo",
        "--people",
        "60",
        "--epochs",
        "16",
        "--hidden",
        "64",
        "--layers",
        "2",
        "--vocab-size",
        "1024",
        "--learning-rate",
        "3e-3",
        "--micro-batch",
        "4",
        cwd=root,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert proc.stdout.strip().splitlines()[-1] == "report: results/report/report.md"
    assert re.search(r"reverse \d\.\d{3}; untrained \d\.\d{3} \(chance 0\.25\)", proc.stdout), proc.stdout
    return root


@pytest.mark.slow
def test_demo_memorizes_far_above_chance(demo):
    (row,) = collect(demo / "results", demo / "outputs")
    assert row["run"] == "demo"
    assert row["overall"] >= 0.9, row  # chance is 0.25
    for field in FIELDS:
        assert row[field] >= 0.7, (field, row)
    assert row["heldout"] is not None and row["reverse"] is not None
    history = [json.loads(x) for x in (demo / "outputs/demo/model/engram_recall.jsonl").read_text().splitlines()]
    assert (
        history[0]["step"] == 0 and history[-1]["eval_engram_qa_acc_overall"] > history[0]["eval_engram_qa_acc_overall"]
    )
    assert row["untrained"] == history[0]["eval_engram_qa_acc_overall"]  # the measured floor, reported


@pytest.mark.slow
def test_report_table_matches_the_result_files(demo):
    out = demo / "results" / "report"
    assert sorted(p.name for p in out.iterdir()) == [
        "accuracy.png",
        "manifest.json",
        "recall_over_training.png",
        "report.csv",
        "report.json",
        "report.md",
    ]
    lm = json.loads(latest_results(demo / "results" / "demo").read_text())["results"]
    with (out / "report.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    for field in FIELDS:
        assert float(row[field]) == lm[f"bios_qa_{field}"]["acc,none"]
    assert float(row["overall"]) == lm["bios_qa"]["acc,none"]
    assert float(row["heldout"]) == lm["bios_qa_heldout"]["acc,none"]
    assert float(row["reverse"]) == lm["bios_qa_reverse"]["acc,none"]
    history = (demo / "outputs/demo/model/engram_recall.jsonl").read_text().splitlines()
    assert float(row["untrained"]) == json.loads(history[0])["eval_engram_qa_acc_overall"]
    md = (out / "report.md").read_text()
    demo_row = next(line for line in md.splitlines() if line.startswith("| demo "))
    cells = [c.strip() for c in demo_row.strip("|").split("|")]
    assert cells[:2] == ["demo", f"{lm['bios_qa_birth_date']['acc,none']:.3f}"]
    assert cells[-1] == f"{float(row['untrained']):.3f}"
    assert "## Every metric, as lm-eval reports it" in md and "|bios_qa" in md  # lm-eval's own table
    for png in ("accuracy.png", "recall_over_training.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_localize_the_demo_run_and_recall_at_fraction_1_is_lm_evals(demo):
    proc = pipeline("localize", "--model", "demo", "--fractions", "0,0.1,1", "--trace-limit", "2", cwd=demo)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    out = demo / "results" / "demo" / "localize"
    assert proc.stdout.strip().splitlines()[-1] == f"localization: {out.relative_to(demo) / 'summary.md'}"
    lm = json.loads(latest_results(demo / "results" / "demo").read_text())["results"]
    graft = json.loads((out / "graft" / "graft.json").read_text())
    at_1 = next(p for p in graft["points"] if p["fraction"] == 1)["recall"]
    assert at_1 == graft["reference"]["tuned"]
    for qset, task in (("train", "bios_qa"), ("heldout", "bios_qa_heldout"), ("reverse", "bios_qa_reverse")):
        assert at_1[qset]["overall"] == pytest.approx(lm[task]["acc,none"], abs=1e-12)  # the evaluator is lm-eval's
    summary = (out / "summary.md").read_text()
    for section in (
        "## What changed",
        "## How few weights carry the memory (graft)",
        "## How few weights carry the memory (prune)",
        "## Which states carry the fact",
        "## Probes: where the attributes are decodable",
    ):
        assert section in summary


def mcnemar_exact(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p-value, by hand: twice the binomial tail of the rarer change."""
    n, k = gained + lost, min(gained, lost)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0


@pytest.mark.slow
def test_compare_builds_deltas_and_p_values_from_real_result_and_sample_files(demo, tmp_path):
    data = demo / "data" / "demo"
    base_out = tmp_path / "base"
    assert evaluate(
        f"pretrained={demo / 'outputs/demo/init'},dtype=float32", data, base_out, ["bios_qa", "bios_qa_reverse"]
    )
    tuned_file = latest_results(demo / "results" / "demo")
    proc = pipeline("compare", "--base-results", str(base_out), "--tuned-results", str(tuned_file), cwd=demo)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tuned_file.parent / "compare.json").read_text())
    base_side, tuned_side = Side.load(base_out), Side.load(tuned_file)
    assert rows == json.loads(json.dumps(compare_results(base_side, tuned_side)))
    base, tuned = base_side.results["results"], tuned_side.results["results"]
    assert {r["task"] for r in rows} == {"bios_qa", "bios_qa_reverse", *(f"bios_qa_{f}" for f in FIELDS)}
    for r in rows:
        assert r["base"] == base[r["task"]][f"{r['metric']},none"] and r["delta"] == r["tuned"] - r["base"]
        assert r["base_stderr"] == base[r["task"]][f"{r['metric']}_stderr,none"]
    # Every subtask logged samples on both sides: a paired test on the same questions, by hand.
    pooled = [0, 0]
    for field in FIELDS:
        task = f"bios_qa_{field}"
        b = {json.loads(x)["doc_id"]: json.loads(x)["acc"] for x in base_side.samples[task].read_text().splitlines()}
        t = {json.loads(x)["doc_id"]: json.loads(x)["acc"] for x in tuned_side.samples[task].read_text().splitlines()}
        gained, lost = sum(t[d] > b[d] for d in b), sum(t[d] < b[d] for d in b)
        pooled = [pooled[0] + gained, pooled[1] + lost]
        row = next(r for r in rows if r["task"] == task and r["metric"] == "acc")
        assert (row["test"], row["n"]) == ("McNemar exact", len(b))
        assert row["p_value"] == pytest.approx(mcnemar_exact(gained, lost), rel=1e-9)
    overall = next(r for r in rows if r["task"] == "bios_qa" and r["metric"] == "acc")
    assert overall["p_value"] == pytest.approx(mcnemar_exact(*pooled), rel=1e-9) and overall["significant"]
    assert overall["delta"] > 0.2  # memorization is what fine-tuning bought
    md = (tuned_file.parent / "compare.md").read_text()
    assert f"| {overall['base']:.4f} ± {overall['base_stderr']:.4f} |" in md and "McNemar exact, n=" in md
    assert str(tuned_side.samples["bios_qa_major"]) in md  # where to see exactly which facts
    # Without samples the p-value comes from the two standard errors (a two-sided z-test), by hand.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / tuned_file.name).write_bytes(tuned_file.read_bytes())
    assert pipeline("compare", "--base-results", str(base_out), "--tuned-results", str(bare), cwd=demo).returncode == 0
    row = next(r for r in json.loads((bare / "compare.json").read_text()) if r["task"] == "bios_qa_reverse")
    z = abs(row["delta"]) / math.sqrt(row["base_stderr"] ** 2 + row["tuned_stderr"] ** 2)
    assert row["test"] == "z-test (stderr)" and row["p_value"] == pytest.approx(math.erfc(z / math.sqrt(2)))
    # The report shows it: error bars from lm-eval's stderr, the forgetting plot, the samples.
    proc = pipeline("report", cwd=demo)
    assert proc.returncode == 0, proc.stderr
    (rep,) = json.loads((demo / "results/report/report.json").read_text())
    assert rep["overall_stderr"] == tuned["bios_qa"]["acc_stderr,none"] and len(rep["samples"]) == 2 * len(FIELDS) + 1
    assert (demo / "results/report/forgetting.png").read_bytes()[:4] == b"\x89PNG"


def test_paired_tests_on_hand_made_scores():
    from scipy import stats

    # 0/1 scores: exact McNemar on the 3 items gained and 1 lost.
    base, tuned = [1, 1, 0, 0, 0, 1, 0, 1], [1, 0, 1, 1, 1, 1, 0, 1]
    assert paired_test(base, tuned) == (pytest.approx(mcnemar_exact(3, 1)), "McNemar exact")
    assert mcnemar_exact(3, 1) == 0.625
    assert paired_test([1, 0, 1], [1, 0, 1]) == (1.0, "McNemar exact")
    # Other scores: a paired t-test, t = mean(d) / (sd(d) / sqrt(n)) with n - 1 degrees of freedom.
    base, tuned = [0.2, 0.5, 0.1, 0.9, 0.4], [0.3, 0.9, 0.1, 1.0, 0.8]
    d = [t - b for b, t in zip(base, tuned)]
    mean = sum(d) / len(d)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1))
    p = 2 * stats.t.sf(mean / (sd / math.sqrt(len(d))), len(d) - 1)
    assert paired_test(base, tuned) == (pytest.approx(p, rel=1e-9), "paired t-test")
    assert z_test(0.1, 0.03, 0.04) == pytest.approx(math.erfc(0.1 / 0.05 / math.sqrt(2)))
    assert z_test(0.1, None, 0.04) is None


@pytest.mark.parametrize("suite", ["tiny", "openllm", "leaderboard", "bios"])
def test_every_suite_names_groups_the_installed_lm_eval_knows(suite, task_manager):
    known = task_manager  # lm-eval's own index, with ours added
    tasks = suite_tasks(suite)
    assert tasks[:3] == ["bios_qa", "bios_qa_heldout", "bios_qa_reverse"]
    assert all(t in known.all_groups or t in known.all_tasks for t in tasks)
    assert {"tiny": "tinyBenchmarks", "openllm": "openllm", "leaderboard": "leaderboard"}.get(suite, "bios_qa") in (
        known.all_groups
    )


def test_compare_options_pass_lm_evals_own_flags_through():
    opts = CompareOptions(apply_chat_template=True, fewshot_as_multiturn=True, hf_hub_log_args="hub_results_org=o")
    assert opts.lm_eval_args() == [
        "--apply_chat_template",
        "--fewshot_as_multiturn",
        "--hf_hub_log_args",
        "hub_results_org=o",
    ]
    cmd = eval_command("pretrained=x", "d", Path("r"), ["bios_qa", "tinyBenchmarks"], extra=opts.lm_eval_args())
    assert cmd[-5:] == ["--log_samples", *opts.lm_eval_args()]  # samples by default with bios_qa
    assert "--log_samples" not in eval_command("pretrained=x", "d", Path("r"), ["bios_qa"], log_samples=False)
    assert "--log_samples" not in eval_command("pretrained=x", "d", Path("r"), ["hellaswag"])
    with pytest.raises(RunError, match="lm-eval has no task or group 'hellaswg'"):
        check_tasks(["bios_qa", "hellaswg"])
    with pytest.raises(RunError, match="unknown COMPARE=huge"):
        suite_tasks("huge")


@pytest.mark.slow
def test_train_all_continues_past_a_failing_model_and_skips_finished_runs(bios_dir, tiny_llama, tmp_path):
    # gpt2 cannot be downloaded offline, so it fails; tiny trains (its recipe's base model
    # is outputs/tiny-llama-init, relative to the working directory).
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "tiny-llama-init").symlink_to(tiny_llama)
    args = [
        "train-all",
        "--models",
        "gpt2 tiny",
        "--data-dir",
        str(bios_dir),
        "--set",
        "max_steps=2",
        "engram_eval_samples=4",
    ]
    proc = pipeline(*args, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "gpt2-full-bioS_multi5_permutes: failed" in proc.stdout
    assert "tiny-full-bioS_multi5_permutes: trained" in proc.stdout
    assert (tmp_path / "outputs/tiny-full-bioS_multi5_permutes/model/model.safetensors").exists()
    # Run again (tiny alone: gpt2 would only fail again, after another ~15 s of imports).
    again = pipeline(*[a.replace("gpt2 tiny", "tiny") for a in args], cwd=tmp_path)
    assert "tiny-full-bioS_multi5_permutes: skipped" in again.stdout and again.returncode == 0, again.stdout
    # make compare on that trained run: base and tuned through lm-eval, samples logged, paired tests.
    proc = pipeline(
        "compare", "--model", "tiny", "--suite", "bios", "--limit", "3", "--data-dir", str(bios_dir), cwd=tmp_path
    )
    out = tmp_path / "results/tiny-full-bioS_multi5_permutes/compare"
    assert proc.returncode == 0 and proc.stdout.strip().endswith(f"comparison: {out.relative_to(tmp_path)}/compare.md")
    rows = json.loads((out / "compare.json").read_text())
    overall = next(r for r in rows if r["task"] == "bios_qa" and r["metric"] == "acc")
    assert (overall["test"], overall["n"]) == ("McNemar exact", 3 * len(FIELDS))  # pooled over the six fields
    assert {r["task"] for r in rows} >= {"bios_qa_heldout", "bios_qa_reverse"}
    assert len(list(out.glob("tuned/*/samples_bios_qa_major_*.jsonl"))) == 1


def test_unknown_model_method_or_field_fail_clearly(bios_dir, tmp_path):
    proc = pipeline("train-all", "--models", "gpt5", "--data-dir", str(bios_dir), cwd=tmp_path)
    assert proc.returncode == 1 and "no recipe for MODEL=gpt5; choose from gpt2, gpt2-large" in proc.stdout
    proc = pipeline("train-all", "--models", "gpt2", "--method", "qlora", "--data-dir", str(bios_dir), cwd=tmp_path)
    assert "no qlora recipe for gpt2; its recipes use full, lora" in proc.stdout
    proc = pipeline("report", "--results", str(tmp_path / "none"), cwd=tmp_path)
    assert proc.returncode == 2 and "no lm-eval results under" in proc.stderr


def test_derived_config_points_at_the_data_and_bio_field(tmp_path):
    cfg = derive_config(RECIPES_DIR / "llama3b-lora.yml", "data/x", tmp_path / "run" / "model", "bioS_fullname")
    assert cfg["datasets"][0]["path"] == "data/x/train/bioS_fullname.jsonl"
    assert cfg["output_dir"] == str(tmp_path / "run" / "model")
    assert cfg["dataset_prepared_path"] == str(tmp_path / "run" / "prepared")
    tiny = derive_config(RECIPES_DIR / "tiny-full.yml", "data/x", tmp_path / "m")
    assert tiny["engram_data_dir"] == "data/x" and tiny["datasets"][1]["path"] == "data/x/train/qa_train.jsonl"


def test_lm_eval_model_args_for_each_backend_full_and_adapter(tmp_path):
    from engram_eval.lm_eval_args import model_args
    from engram_run.runs.evaluation import eval_command

    full, adapter = tmp_path / "full", tmp_path / "lora"
    full.mkdir()
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 32}))
    assert model_args(full, "base") == f"pretrained={full},dtype=auto"
    assert (
        model_args(adapter, "meta-llama/Llama-3.2-3B")
        == f"pretrained=meta-llama/Llama-3.2-3B,peft={adapter},dtype=auto"
    )
    assert model_args(adapter, "B", "vllm", "tensor_parallel_size=4") == (
        f"pretrained=B,lora_local_path={adapter},enable_lora=True,max_lora_rank=32,dtype=auto,tensor_parallel_size=4"
    )
    assert (
        model_args(full, "B", "vllm", ",gpu_memory_utilization=0.8,")
        == f"pretrained={full},dtype=auto,gpu_memory_utilization=0.8"
    )
    with pytest.raises(ValueError, match="unknown lm-eval backend 'sglang'; choose from hf, vllm"):
        model_args(full, "B", "sglang")
    with pytest.raises(RunError, match="MODEL_BACKEND=vllm needs vLLM, which is in neither .*: run make install-vllm"):
        eval_command("pretrained=x", "data/bios", tmp_path / "r", ["bios_qa"], 5, backend="vllm")
    vllm_env = tmp_path / "venv-vllm"  # make install-vllm's own environment
    (vllm_env / "bin").mkdir(parents=True)
    (vllm_env / "bin" / "engram-eval").write_text("")
    os.environ["ENGRAM_VLLM_VENV"] = str(vllm_env)
    try:
        cmd = eval_command("pretrained=x", "data/bios", tmp_path / "r", ["bios_qa"], 5, backend="vllm")
    finally:
        del os.environ["ENGRAM_VLLM_VENV"]
    assert cmd[0] == str(vllm_env / "bin" / "engram-eval")
    assert cmd[1:5] == ["--model", "vllm", "--model_args", "pretrained=x"]
    assert cmd[cmd.index("--batch_size") + 1] == "auto" and "--device" not in cmd
    assert cmd[-3:] == ["--limit", "5", "--log_samples"]
    cmd = eval_command("pretrained=x", "data/bios", tmp_path / "r", ["bios_qa"], None, device="cpu")
    assert cmd[cmd.index("--device") + 1] == "cpu" and cmd[cmd.index("--batch_size") + 1] == "32"


def test_make_eval_passes_the_backend_and_model_args_through(bios_dir, tmp_path):
    proc = subprocess.run(
        [
            "make",
            "-n",
            "eval",
            "MODEL=llama3b",
            "MODEL_BACKEND=vllm",
            "MODEL_ARGS=tensor_parallel_size=2",
            "MERGE_LORA=1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if "eval-all" in x)
    assert '--backend vllm --model-args "tensor_parallel_size=2" --merge-lora' in line


def test_the_report_reads_the_plugins_post_training_results_too(tmp_path):
    def result(acc):
        return json.dumps({"results": {"bios_qa": {"acc,none": acc}, "bios_qa_heldout": {"acc,none": acc / 2}}})

    post = tmp_path / "outputs/r1/model/lm_eval/m/results_2026-01-01T00-00-00.json"
    post.parent.mkdir(parents=True)
    post.write_text(result(0.9))
    both = tmp_path / "outputs/r2/model/lm_eval/m/results_2026-01-01T00-00-00.json"
    both.parent.mkdir(parents=True)
    both.write_text(result(0.1))
    (tmp_path / "results/r2/m").mkdir(parents=True)
    (tmp_path / "results/r2/m/results_2026-01-02T00-00-00.json").write_text(result(0.8))
    (tmp_path / "outputs/r1/model/engram_recall.jsonl").write_text('{"step": 0, "eval_engram_qa_acc_overall": 0.25}\n')
    rows = {r["run"]: r for r in collect(tmp_path / "results", tmp_path / "outputs")}
    assert sorted(rows) == ["r1", "r2"]
    assert (rows["r1"]["overall"], rows["r1"]["heldout"], rows["r1"]["untrained"]) == (0.9, 0.45, 0.25)
    assert rows["r2"]["overall"] == 0.8  # make eval's results/<run>/ wins over the post-training run
