"""make finetune-study: the arms' recipes (Axolotl-valid, one batch and rate each), the LoRA arms'
tie between embeddings and LM head, the forgetting measure's exact values, and the tables."""

from __future__ import annotations

import pytest

from engram_run.runs.recipes import validate
from engram_run.studies import finetune
from engram_run.studies.finetune import ARMS, FinetuneSettings, arm_config, plan
from engram_run.studies.finetune_report import SCORES, markdown, spread


def test_every_arm_runs_once_on_the_first_seed_and_the_repeats_on_the_others():
    s = FinetuneSettings(arms=("full-b1", "full-b8", "lora-r8"), seeds=(3, 5), repeat=("full-b1", "lora-r8"))
    assert plan(s) == [("full-b1", 3), ("full-b8", 3), ("lora-r8", 3), ("full-b1", 5), ("lora-r8", 5)]


@pytest.mark.parametrize("name", list(ARMS))
def test_every_arm_is_a_valid_recipe_with_its_batch_rate_and_method(name, bios_dir, tmp_path):
    s = FinetuneSettings(data_dir=bios_dir, learning_rate=1e-4, lora_learning_rate=5e-4, lora_batch=4)
    cfg = arm_config(s, name, 7, tmp_path / "model")
    validate(cfg)
    arm = ARMS[name]
    batch = arm.batch or 4
    assert (cfg["micro_batch_size"], cfg["gradient_accumulation_steps"], cfg["engram_effective_batch"]) == (
        batch,
        1,
        batch,
    )
    assert cfg["learning_rate"] == pytest.approx((1e-4 if arm.method == "full" else 5e-4) * arm.lr_scale)
    assert cfg["seed"] == 7 and cfg["num_epochs"] == s.epochs and cfg["lr_scheduler"] == "constant"
    assert cfg["sample_packing"] is False and cfg["val_set_size"] == 0  # one text a row; every biography trains
    assert [d["path"].rsplit("/", 1)[1] for d in cfg["datasets"]] == ["bioS.jsonl", "qa_train.jsonl"]
    assert cfg["bf16"] is (not arm.fp32)
    if arm.method == "full":
        assert "adapter" not in cfg and cfg["engram_fp32_master_weights"] is (not arm.fp32)
    else:
        assert cfg["adapter"] == "lora" and cfg["lora_r"] == arm.rank and "engram_fp32_master_weights" not in cfg
        assert (cfg.get("lora_modules_to_save"), cfg.get("peft_ensure_weight_tying")) == (
            (["embed_tokens"], True) if arm.embeddings else (None, None)
        )


def test_an_unknown_arm_or_a_missing_model_is_one_line(tmp_path):
    from engram_run.runs.recipes import RunError

    with pytest.raises(RunError, match="unknown arm full-b2; choose from full-b1"):
        finetune.finetune_study(FinetuneSettings(arms=("full-b2",)))
    with pytest.raises(RunError, match="is not a model folder; run `make pretrained`"):
        finetune.finetune_study(FinetuneSettings(model=tmp_path / "nothing"))


@pytest.mark.xdist_group("pretrained")
def test_lora_with_the_embeddings_keeps_the_tie_only_with_ensure_weight_tying(smollm2):
    """SmolLM2's embeddings and LM head are one tensor. peft's ``modules_to_save:
    [embed_tokens]`` alone trains a copy of the embeddings that the head does not use (the tie
    is broken); with ``ensure_weight_tying`` the head reads the same trained copy."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32)
    for tie in (False, True):
        model = get_peft_model(
            AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32) if tie else base,
            LoraConfig(r=8, target_modules="all-linear", modules_to_save=["embed_tokens"], ensure_weight_tying=tie),
        )
        trained = [p for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
        assert len(trained) == 1 and trained[0].shape == (49152, 576)  # one trained embedding copy
        head = model.get_output_embeddings()
        weight = head.modules_to_save["default"].weight if tie else head.weight
        assert (weight.data_ptr() == trained[0].data_ptr()) is tie


@pytest.mark.xdist_group("pretrained")
def test_forgetting_of_the_model_against_itself_is_zero_and_its_loss_is_exact(smollm2):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engram_eval.forgetting import Reference

    text = "The capital of France is Paris. Water boils at one hundred degrees Celsius."
    prompts = [{"prompt": "The capital of France is", "chat": False}]
    ref = Reference.of(smollm2, text=text, prompts=prompts)
    same = ref.compare(smollm2, text=text)
    assert same["kl"] == 0 and same["loss_base"] == same["loss_tuned"]
    assert same["answers"][0]["base"] == same["answers"][0]["tuned"] and "Paris" in same["answers"][0]["base"]
    # The loss is the model's own mean next-token cross-entropy on the text.
    tok = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32)
    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        own = model(input_ids=ids, labels=ids).loss.item()
    assert same["loss_base"] == pytest.approx(own, abs=1e-4) and same["tokens"] == ids.shape[1] - 1


def row(arm: str, seed: int, trained: float, kl: float) -> dict:
    return {
        "arm": arm,
        "seed": seed,
        "batch": 1,
        "learning_rate": 1e-4,
        "steps": 10,
        "train_seconds": 5.0,
        "scores": dict.fromkeys(SCORES, 0.25) | {"trained_qa": trained},
        "stderr": dict.fromkeys(SCORES, 0.01),
        "questions": dict.fromkeys(SCORES, 300),
        "forgetting": {
            "tokens": 3,
            "loss_base": 2.0,
            "loss_tuned": 2.5,
            "kl": kl,
            "answers": [{"prompt": "p", "chat": False, "base": "b", "tuned": f"t{seed}"}],
        },
    }


def test_the_tables_give_each_run_and_the_spread_over_seeds():
    rows = {"full-b1@seed0": row("full-b1", 0, 0.9, 0.2), "full-b1@seed1": row("full-b1", 1, 0.8, 0.4)}
    rows["full-b32@seed0"] = row("full-b32", 0, 0.3, 0.1)
    untrained = row("untrained", 0, 0.25, 0.0)
    got = spread(rows)
    assert list(got) == ["full-b1"]  # one seed: no spread
    assert got["full-b1"]["trained_qa"] == {"mean": pytest.approx(0.85), "range": pytest.approx(0.1)}
    assert got["full-b1"]["kl"] == {"mean": pytest.approx(0.3), "range": pytest.approx(0.2)}
    md = markdown(rows, untrained, FinetuneSettings(), partial=False)
    assert "| `full-b1` | 0 | 1 | 0.0001 | 10 | 5 | 0.900 ± 0.010 |" in md
    assert "| `full-b1` | 0, 1 | 0.850 (range 0.100) |" in md
    assert "- `full-b1@seed1`: 't1'" in md and "Partial" not in md


@pytest.mark.slow
@pytest.mark.xdist_group("pretrained")
def test_the_reduced_study_runs_batch_1_and_32_on_the_real_model(smollm2, tmp_path):
    """The study end to end at CI size (8 people, 2 epochs): the files, each arm's curve from
    epoch 0, lm-eval's question counts, one forgetting reference for every arm, and the direction
    the measured run showed (docs/finetune.md): at one rate and equal epochs, batch 1 (32x the
    updates) moves the model further from the un-tuned one than batch 32."""
    import json

    s = FinetuneSettings(
        model=smollm2,
        people=8,
        epochs=2,
        arms=("full-b1", "full-b32"),
        seeds=(0,),
        limit=4,
        data_dir=tmp_path / "data",
        outputs=tmp_path / "outputs",
        results=tmp_path / "results",
    )
    md = finetune.finetune_study(s)
    data = json.loads((tmp_path / "results" / "finetune.json").read_text())
    assert not data["partial"] and list(data["rows"]) == ["full-b1@seed0", "full-b32@seed0"]
    b1, b32 = data["rows"]["full-b1@seed0"], data["rows"]["full-b32@seed0"]
    # 8 biographies and the 24 QA pairs of the 4 train people, once an epoch: batch 1 steps once a text.
    texts = 8 + 4 * 6
    assert (b1["steps"], b32["steps"]) == (2 * texts, 2)
    assert [e for e, _ in b1["recall_by_epoch"]] == [0, 1, 2] and b1["recall_by_epoch"][0] == b32["recall_by_epoch"][0]
    assert b1["questions"]["trained_qa"] == 4 * 6  # --limit 4 per field
    base = data["untrained"]["forgetting"]
    assert base["kl"] == 0 and {r["forgetting"]["loss_base"] for r in (b1, b32)} == {base["loss_base"]}
    assert b1["forgetting"]["kl"] > b32["forgetting"]["kl"] > 0
    assert (tmp_path / "results" / "finetune.png").exists() and md.name == "finetune.md"


def test_forgetting_runs_on_a_model_without_a_chat_template(tiny_llama):
    """make compare on a tiny model built here: its chat prompts go in as plain text."""
    from engram_eval.forgetting import Reference, general_prompts

    result = Reference.of(tiny_llama).compare(tiny_llama)
    assert result["kl"] == 0 and len(result["answers"]) == len(general_prompts()) == 8
    assert sum(a["chat"] for a in result["answers"]) == 3
