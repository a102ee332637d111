"""`make reproduce` in Physics of LM 3.1's protocol: its configs (schedule, one step budget,
QA share, the LoRA QA fine-tune, no validation split, every scale valid for Axolotl), the
memorization gate against an oracle, and the study at the suite's scale."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers.common import cli_env

from engram_data.contract import DEFAULT_VARIANTS, QA_TRAIN, read_jsonl, train_file
from engram_run.runs.recipes import validate
from engram_run.studies.common import text_size
from engram_run.studies.reproduce_config import (
    PAPER_WARMUP,
    SCALES,
    ReproduceSettings,
    at_scale,
    qa_repeats,
    run_config,
    write_repeated_qa,
)


def pipeline(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engram_run", *args], cwd=cwd, env=cli_env(), capture_output=True, text=True
    )


def test_the_budget_of_text_passes_is_the_same_characters_for_every_variant(bios_dir):
    """The studies that still train by epochs (probe, reversal) give each variant the epochs
    nearest to the same characters of text."""
    from engram_run.studies.common import budget_epochs

    epochs = budget_epochs(bios_dir, 12, DEFAULT_VARIANTS)
    qa = text_size(train_file(bios_dir, QA_TRAIN))
    size = {v: text_size(train_file(bios_dir, v)) + qa for v in DEFAULT_VARIANTS}
    assert epochs["bioS_multi5_permutes"] == 12 and epochs["bioS"] > 24
    for v in DEFAULT_VARIANTS:
        assert abs(epochs[v] * size[v] - 12 * size["bioS_multi5_permutes"]) <= size[v] / 2, (v, epochs)


def test_every_variant_gets_the_papers_schedule_for_the_same_steps_and_no_validation_split(bios_dir, tmp_path):
    s = ReproduceSettings(data_dir=bios_dir, steps=1000, qa_steps=400)
    qa_path = str(train_file(bios_dir, QA_TRAIN))
    for variant in DEFAULT_VARIANTS:
        cfg = run_config(s, "bio", variant, tmp_path / "init", tmp_path / variant / "model")
        assert [d["path"] for d in cfg["datasets"]] == [str(train_file(bios_dir, variant))]
        assert (cfg["max_steps"], cfg["warmup_steps"], cfg["lr_scheduler"], cfg["cosine_min_lr_ratio"]) == (
            1000,
            round(PAPER_WARMUP * 1000),
            "cosine",
            0.1,
        )
        assert (cfg["weight_decay"], cfg["adam_epsilon"], cfg["learning_rate"]) == (0.1, 1e-6, s.learning_rate)
        # Every person's biographies train; the recall evaluation runs on the trained QA instead.
        assert "val_set_size" not in cfg and [d["path"] for d in cfg["test_datasets"]] == [qa_path]
        assert cfg["test_datasets"][0]["split"] == "train[:32]"  # a few trained pairs: cheap evaluations
        assert cfg["eval_steps"] == cfg["save_steps"] == 1 / 8 and cfg["base_model"] == str(tmp_path / "init")
        validate(cfg)
    qa = run_config(s, "qa", None, tmp_path / "bio" / "model", tmp_path / "qa" / "model")
    assert [d["path"] for d in qa["datasets"]] == [qa_path] and qa["base_model"] == str(tmp_path / "bio" / "model")
    assert (qa["adapter"], qa["lora_r"], qa["lora_target_modules"], qa["lora_modules_to_save"]) == (
        "lora",
        16,
        ["q_proj", "v_proj"],
        ["embed_tokens"],
    )
    assert (qa["max_steps"], qa["weight_decay"], qa["learning_rate"], qa["sample_packing"]) == (400, 0.01, 3e-3, False)
    assert (qa["warmup_steps"], qa["lr_scheduler"], qa["cosine_min_lr_ratio"]) == (0, "cosine", 0.1)  # appendix D
    validate(qa)
    full = run_config(ReproduceSettings(data_dir=bios_dir, qa_finetune="full"), "qa", None, tmp_path, tmp_path / "m")
    assert "adapter" not in full
    validate(full)


def test_mixed_training_makes_the_qa_the_papers_share_of_the_text(bios_dir, tmp_path):
    s = ReproduceSettings(data_dir=bios_dir)
    qa = text_size(train_file(bios_dir, QA_TRAIN))
    for variant in DEFAULT_VARIANTS:
        k = qa_repeats(s, variant)
        bio = text_size(train_file(bios_dir, variant))
        share = k * qa / (k * qa + bio)
        assert abs(share - 0.8) <= 0.8 * qa / (k * qa + bio), (variant, k, share)  # the nearest whole copy
        path = write_repeated_qa(s, tmp_path, k)
        assert text_size(path) == k * qa and path.name == f"qa_train_x{k}.jsonl"
        cfg = run_config(s, "mixed", variant, None, tmp_path / "m", path)
        assert [d["path"] for d in cfg["datasets"]] == [str(train_file(bios_dir, variant)), str(path)]
    assert qa_repeats(s, "bioS_multi5_permutes") > 3 * qa_repeats(s, "bioS")  # five biographies a person


def test_every_scale_is_a_config_axolotl_accepts_and_options_win_over_the_scale(bios_dir, tmp_path):
    for scale in SCALES:
        s = at_scale(scale, data_dir=bios_dir)
        assert s.hidden % 64 == 0 and s.heads == s.hidden // 64  # 64-wide heads
        for stage in ("bio", "qa"):
            validate(run_config(s, stage, "bioS", tmp_path, tmp_path / scale / stage))
    paper = at_scale("paper")
    assert (paper.people, paper.layers, paper.hidden, paper.steps, paper.micro_batch, paper.sequence_len) == (
        100000,
        12,
        768,
        80000,
        96,
        512,
    )
    assert (paper.learning_rate, paper.qa_learning_rate, paper.qa_micro_batch, paper.weight_decay) == (
        1e-3,
        3e-4,
        48,
        0.1,
    )
    assert at_scale("reference", steps=7).steps == 7 and at_scale("reference").people == 500


class Oracle(torch.nn.Module):
    """Logits that put the right next token first (``shift`` 0); ``shift`` 1 predicts the
    current token instead: a model off by one position."""

    def __init__(self, vocab: int, shift: int = 0):
        super().__init__()
        self.vocab, self.shift, self.w = vocab, shift, torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        target = torch.roll(input_ids, -1 + self.shift, dims=1)
        return type("Out", (), {"logits": torch.nn.functional.one_hot(target, self.vocab).float()})()


def test_the_memorization_gate_scores_an_oracle_1_and_a_model_off_by_one_near_0(bios_dir, tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engram_eval.memorization import GATE, AttributeAccuracy

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    gate = AttributeAccuracy(bios_dir, tok, "bioS_multi5_permutes", split="heldout")
    heldout = [p for p in read_jsonl(bios_dir / "people.jsonl") if p["split"] == "heldout"]
    assert gate.items and len(gate.items) == 5 * len(heldout)  # every biography of every heldout person
    # Each biography's attribute tokens: at least one token per value, none at the name.
    assert all(len(at) >= 6 for _, at in gate.items)
    oracle = gate.evaluate(Oracle(len(tok)))
    assert oracle["attribute_token_accuracy"] == 1.0 and oracle["memorized"] and oracle["tokens"] > 0
    assert gate.evaluate(Oracle(len(tok), shift=1))["attribute_token_accuracy"] <= 0.05
    untrained = gate.evaluate(AutoModelForCausalLM.from_pretrained(tiny_llama))
    assert untrained["attribute_token_accuracy"] <= 0.02 and not untrained["memorized"] and GATE == 0.99


@pytest.mark.slow
def test_reproduce_at_the_suites_scale_runs_both_protocols_with_the_schedule_gate_and_lora(tmp_path):
    """`make reproduce SCALE=ci`, bioS under both protocols: the schedule as configured, the
    gate measured after the biographies, the QA fine-tune a LoRA adapter on the first run's
    weights (scored merged), and the paper's figures beside the cells."""
    proc = pipeline("reproduce", "--scale", "ci", cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    out = tmp_path / "results" / "reproduce"
    rows = json.loads((out / "reproduce.json").read_text())
    s = at_scale("ci")
    assert list(rows) == list(s.protocols) and all(list(r) == list(s.variants) for r in rows.values())
    for protocol, by_variant in rows.items():
        for variant, r in by_variant.items():
            assert r["steps"] == s.steps and 0 <= r["memorization"]["attribute_token_accuracy"] <= 1
            assert r["memorization"]["memorized"] == (r["memorization"]["attribute_token_accuracy"] >= 0.99)
            assert abs(r["untrained"] - 0.25) <= 0.08, r  # the floor: chance
            assert r["questions"]["heldout_exact"] == 180 and r["questions"]["reverse"] == 60
            run = tmp_path / "outputs/reproduce" / protocol / variant
            history = read_jsonl((run / ("bio" if protocol == "bio_then_qa" else "run")) / "model/engram_log.jsonl")
            lrs = [h["learning_rate"] for h in history if "learning_rate" in h]
            assert max(lrs) <= s.learning_rate and math.isclose(lrs[-1], 0.1 * s.learning_rate, rel_tol=0.05), lrs
    bio = rows["bio_then_qa"]["bioS"]
    second = yaml.safe_load((tmp_path / "outputs/reproduce/bio_then_qa/bioS/qa/config.yml").read_text())
    assert second["base_model"] == str(Path("outputs/reproduce/bio_then_qa/bioS/bio/model"))
    assert [Path(d["path"]).name for d in second["datasets"]] == ["qa_train.jsonl"] and second["adapter"] == "lora"
    assert bio["qa_steps"] == s.qa_steps and "best_model_qa_" in bio["scored"]
    # Measured at this scale (docs/reproduce.md): bioS alone for 400 steps (~67 passes) is
    # memorized (1.000, twice); the LoRA QA fine-tune learns its own questions (0.461, 0.506;
    # untrained 0.26-0.29) and extracts nothing for heldout people (0.011, 0.017).
    assert bio["memorization"]["memorized"], bio
    assert bio["scores"]["trained_qa"] >= max(0.35, bio["untrained"] + 0.1), bio
    assert bio["scores"]["heldout_exact"] <= 0.1, bio
    assert rows["mixed"]["bioS"]["scores"]["trained_qa"] >= 0.8  # measured 0.906, 0.967
    md = (out / "reproduce.md").read_text()
    assert "| 9.7% |" in md and "arXiv:2309.14316 v3" in md and "not transcribed" not in md
    assert (out / "reproduce.png").stat().st_size > 10_000
