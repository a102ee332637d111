"""Every path on the real pretrained model (SmolLM2-135M-Instruct, converted once for the suite),
each run once at a tiny budget, as a user types it in a workspace where ``make pretrained`` put
the model in ``models/smollm2-135m``: train (full and LoRA, the recipes as written but for the
budget), eval, report, compare (bios_qa and what it forgot), engram-localize (diff, trace,
probe), engram-capacity, and the documents path (corpus-train with this base, then pick-base
against a random tiny model, the floor)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.common import cli_env, run_generate
from helpers.oracle_chat import OracleChat, oracle_server

pytestmark = [pytest.mark.slow, pytest.mark.real_model, pytest.mark.xdist_group("real-model")]
PEOPLE = 16
RUN = "smollm2-135m-{method}-bioS"
# The recipes as written, at a budget a test affords: three optimizer steps of short rows.
BUDGET = (
    "max_steps=3",
    "sequence_len=128",
    "micro_batch_size=4",
    "engram_effective_batch=4",
    "engram_eval_samples=4",
    "engram_eval_heldout=false",
    "engram_eval_reverse=false",
    "save_strategy='no'",  # quoted: YAML reads a bare no as false
    "val_set_size=0",  # no validation split: the plugin scores recall at the (one) epoch's end
)


def engram_run(ws: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "engram_run", *args], cwd=ws, env=cli_env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def tool(ws: Path, *cmd: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), cwd=ws, env=cli_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def ws(smollm2, tmp_path_factory) -> Path:
    """A workspace: models/smollm2-135m (make pretrained's folder), data/bios of PEOPLE people,
    and both recipes trained on it."""
    ws = tmp_path_factory.mktemp("real-model")
    (ws / "models").mkdir()
    (ws / "models" / "smollm2-135m").symlink_to(smollm2)
    proc = run_generate("--num-people", str(PEOPLE), "--seed", "0", "--out", str(ws / "data" / "bios"))
    assert proc.returncode == 0, proc.stderr
    for method in ("full", "lora"):
        engram_run(
            ws, "train-all", "--models", "smollm2-135m", "--method", method, "--variant", "bioS", "--set", *BUDGET
        )
    return ws


@pytest.mark.parametrize("method", ["full", "lora"])
def test_both_recipes_train_the_real_model_and_score_recall_from_step_0(ws, method):
    model = ws / "outputs" / RUN.format(method=method) / "model"
    assert (model / ".engram_done").exists()
    assert (model / "adapter_config.json").exists() == (method == "lora")
    history = [json.loads(line) for line in (model / "engram_recall.jsonl").read_text().splitlines()]
    assert history[0]["step"] == 0 and history[-1]["step"] == 3
    assert all(0 <= h["eval_engram_qa_acc_overall"] <= 1 for h in history)
    log = (ws / "outputs" / RUN.format(method=method) / "train.log").read_text()
    assert "eos_token" not in log or "<|im_start|>" not in log.split("eos_token", 1)[1][:40]


def test_eval_report_and_compare_on_the_real_model(ws):
    engram_run(ws, "eval-all", "--models", "smollm2-135m", "--method", "full", "--variant", "bioS", "--limit", "4")
    found = list((ws / "results" / RUN.format(method="full")).rglob("results_*.json"))
    assert found
    res = json.loads(found[0].read_text())["results"]
    assert {"bios_qa", "bios_qa_heldout", "bios_qa_reverse"} <= set(res)
    engram_run(ws, "report")
    table = (ws / "results" / "report" / "report.md").read_text()
    assert RUN.format(method="full") in table
    engram_run(
        ws,
        "compare",
        "--model",
        "smollm2-135m",
        "--method",
        "full",
        "--variant",
        "bioS",
        "--suite",
        "bios",
        "--limit",
        "4",
    )
    out = ws / "results" / RUN.format(method="full") / "compare"
    md = (out / "compare.md").read_text()
    assert "bios_qa" in md and "## What it forgot" in md
    forgot = json.loads((out / "forgetting.json").read_text())
    # Three steps moved the weights a little: a KL above 0 (the model against itself gives 0 exactly).
    assert forgot["kl"] > 0 and forgot["loss_base"] == pytest.approx(1.877, abs=0.01)
    assert [a["prompt"] for a in forgot["answers"]][0] == "The capital of France is"
    assert forgot["answers"][0]["base"].startswith("Paris")


def test_localize_and_capacity_on_the_real_model(ws):
    tuned = ws / "outputs" / RUN.format(method="full") / "model"
    data = ws / "data" / "bios"
    out = ws / "results" / "localize"
    base = ["--base", "models/smollm2-135m"]
    tool(ws, "engram-localize", "diff", "--tuned", str(tuned), *base, "--out", str(out), "--no-progress")
    diff = json.loads((out / "diff" / "diff.json").read_text())
    assert diff["total"]["changed"] > 0 and diff["total"]["tensors"] == 272
    # one field, the first and last layers: a 30-layer trace of every site takes an hour here
    tool(
        ws, "engram-localize", "trace", "--model", str(tuned), "--data", str(data), "--out", str(out), "--limit", "1",
        "--fields", "birth_city", "--layers", "0,29", "--no-progress",
    )  # fmt: skip
    traced = json.loads((out / "trace" / "trace.json").read_text())
    assert traced["layers"] == 30 and traced["traced_layers"] == [0, 29]
    tool(ws, "engram-localize", "probe", "--model", str(tuned), "--data", str(data), "--out", str(out))
    assert (out / "probe").is_dir()
    cap = ws / "results" / "capacity"
    tool(ws, "engram-capacity", "--model", str(tuned), "--data", str(data), "--limit", "4", "--out", str(cap))
    result = json.loads((cap / "capacity.json").read_text())
    assert result["people"] == 4 and result["params"] == 134_515_008


def test_documents_on_the_real_model_and_pick_base_against_a_random_floor(ws, bios_dir, tiny_llama):
    docs = ws / "handbook"
    docs.mkdir()
    with oracle_server(bios_dir / "people.jsonl", first=6) as url:
        for p in OracleChat.people.values():
            (docs / f"person-{p['id']}.md").write_text(p["bioS"] + "\n")
        engram_run(
            ws,
            "corpus-train",
            "--corpus",
            str(docs),
            "--model",
            "smollm2-135m",
            "--generator",
            f"openai:{url}",
            "--generator-model",
            "stub",
            "--tokenizer",
            "models/smollm2-135m",
            "--generate-args",
            "--temperatures 2 --heldout-temperatures 1 --chunk-tokens 120 --styles simple",
            "--set",
            *BUDGET,
        )
    data = ws / "data" / "corpus-handbook"
    found = list((ws / "results").glob("smollm2-135m-full-corpus-handbook/**/results_*.json"))
    assert found and "corpus_qa" in json.loads(found[0].read_text())["results"]
    out = ws / "results" / "pick-base"
    engram_run(
        ws,
        "pick-base",
        "--models",
        f"{tiny_llama} models/smollm2-135m",
        "--data-dir",
        str(data),
        "--sample",
        "12",
        "--out",
        str(out),
    )
    rows = json.loads((out / "pick-base.json").read_text())
    assert {r["candidate"] for r in rows} == {tiny_llama.name, "smollm2-135m"}
    trained = json.loads((data / "manifest.json").read_text())["counts"]["qa_train"]
    assert trained == 6 and all(r["questions"] == trained for r in rows)  # a sample of 12 from 6: all 6
