"""engram_plugin: config validation, freezing, recall equal to lm-eval's, best checkpoint,
logged metrics, stopping rules, post-training lm-eval, and two-process evaluation."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from helpers.common import REPO, cli_env
from helpers.train_in_one_process import ERROR_FILE, train_together
from safetensors.torch import load_file

from engram_data.contract import FIELDS
from engram_eval.recall import RecallEvaluator
from engram_plugin.callbacks import BEST_PREFIX, SCORES_FILE, EngramCallback, best_dirs
from engram_plugin.freeze import apply_freezing
from engram_run.runs.recipes import RECIPES_DIR, load_recipe, validate

EVAL_SAMPLES = 12


def with_plugin(**keys) -> dict:
    cfg = load_recipe(RECIPES_DIR / "tiny-full.yml")
    cfg["plugins"] = ["engram_plugin.EngramPlugin"]
    cfg.update(keys)
    return cfg


# --------------------------------------------------------------------------- configuration


def test_readme_usage_snippet_loads_through_axolotls_schema():
    readme = (REPO / "engram_plugin" / "README.md").read_text()
    snippet = re.search(r"## Usage\n.*?```yaml\n(.*?)```", readme, re.S).group(1)
    keys = yaml.safe_load(snippet)
    validated = validate({**load_recipe(RECIPES_DIR / "tiny-full.yml"), **keys})
    for key, value in keys.items():
        if key.startswith("engram_"):
            assert validated[key] == value, key
    assert validated["plugins"] == ["engram_plugin.EngramPlugin"]


def test_defaults_apply_when_only_the_plugin_is_listed():
    cfg = {k: v for k, v in with_plugin().items() if not k.startswith("engram_") and k != "metric_for_best_model"}
    validated = validate(cfg)
    assert validated["engram_eval_samples"] == 100 and validated["engram_recall_eval"] is True
    assert validated["engram_post_eval_tasks"] == ["bios_qa", "bios_qa_heldout", "bios_qa_reverse"]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            {"engram_freez_embeddings": True},
            "unknown engram plugin key 'engram_freez_embeddings': did you mean 'engram_freeze_embeddings'?",
        ),
        (
            {"engram_eval_sample": 10},
            "unknown engram plugin key 'engram_eval_sample': did you mean 'engram_eval_samples'?",
        ),
        ({"engram_stop_at_recall": 1.5}, "engram_stop_at_recall is an accuracy in (0, 1] (got 1.5)"),
        ({"engram_eval_samples": 0}, "engram_eval_samples must be a positive integer or null (got 0)"),
        ({"engram_freeze_layers": [-1]}, "engram_freeze_layers must hold layer indices >= 0"),
        ({"engram_freeze_layers": [1, 1]}, "engram_freeze_layers lists a layer twice"),
        ({"engram_post_eval_model": "last"}, "engram_post_eval_model"),
        (
            {"engram_recall_eval": False},
            "metric_for_best_model is eval_engram_qa_acc_overall, which only exists with engram_recall_eval: true",
        ),
        (
            {"engram_early_stopping_patience": 2, "val_set_size": 0.0},
            "engram_early_stopping_patience watches validation loss: set val_set_size > 0",
        ),
    ],
)
def test_bad_keys_fail_validation_with_the_fix(keys, message):
    with pytest.raises(Exception) as err:
        validate(with_plugin(**keys))
    assert message in str(err.value)


# --------------------------------------------------------------------------- freezing


# Embeddings, GPT-2's positions, the head (tied: the embeddings' own tensor; GPT-J's and
# NeoX's are their own, GPT-J's with a bias), and layer 0.
EXPECTED_FROZEN = {
    "llama": ["model.embed_tokens.weight", "model.layers.0."],
    "gpt2": ["transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0."],
    "gptj": ["transformer.wte.weight", "lm_head.weight", "lm_head.bias", "transformer.h.0."],
    "gpt_neox": ["gpt_neox.embed_in.weight", "lm_head.weight", "gpt_neox.layers.0."],
    "olmo2": ["model.embed_tokens.weight", "lm_head.weight", "model.layers.0."],
}


@pytest.mark.parametrize("arch", list(EXPECTED_FROZEN))
def test_freezing_selects_the_right_parameters_for_every_architecture(arch, tiny_models):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_models[arch])
    frozen = apply_freezing(model, True, [0])
    expected = [n for n, _ in model.named_parameters() if any(n.startswith(p) for p in EXPECTED_FROZEN[arch])]
    assert frozen == sorted(expected)
    assert all(not p.requires_grad for n, p in model.named_parameters() if n in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if n not in frozen)
    with pytest.raises(ValueError, match=r"engram_freeze_layers \[7\] out of range: the model has layers 0..1"):
        apply_freezing(model, False, [7])

    # With an adapter: the adapter weights inside a frozen block are frozen.
    targets = {"gpt2": ["c_attn"], "gpt_neox": ["query_key_value"]}.get(arch, ["q_proj"])
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_models[arch]), LoraConfig(r=2, target_modules=targets)
    )
    frozen = apply_freezing(peft_model, False, [0])
    lora = [n for n, p in peft_model.named_parameters() if "lora_" in n]
    assert [n for n in frozen if "lora_" in n] == sorted(n for n in lora if re.search(r"\.(layers|h)\.0\.", n))
    assert [n for n, p in peft_model.named_parameters() if p.requires_grad] == [n for n in lora if n not in frozen]


# --------------------------------------------------------------------------- a real run


def train(cfg: dict, tmp_path: Path) -> Path:
    """``axolotl train CONFIG``, as on a GPU box: through ``accelerate launch``."""
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        ["axolotl", "train", str(config)], env=cli_env(), capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return Path(cfg["output_dir"])


def run_config(model: Path, bios_dir: Path, out: Path, **extra) -> dict:
    cfg = with_plugin(
        base_model=str(model),
        datasets=[
            {
                "path": str(bios_dir / "train/bioS_multi5_permutes.jsonl"),
                "ds_type": "json",
                "type": "completion",
                "field": "text",
                "split": "train[:384]",
            },
            {
                "path": str(bios_dir / "train/qa_train.jsonl"),
                "ds_type": "json",
                "type": "completion",
                "field": "text",
                "split": "train[:384]",
            },
        ],
        dataset_prepared_path=str(out / "prepared"),
        output_dir=str(out),
        val_set_size=0.05,
        max_steps=6,
        eval_steps=3,
        save_steps=3,
        warmup_steps=0,
        micro_batch_size=16,
        sample_packing=False,  # one row per sample: exact steps per epoch (768 rows x 0.95 / 16 = 46)
        logging_steps=1,
        engram_data_dir=str(bios_dir),
        engram_eval_samples=EVAL_SAMPLES,
        engram_eval_batch_size=8,
    )
    cfg.pop("evals_per_epoch", None)
    cfg.pop("saves_per_epoch", None)
    cfg.update(extra)
    return cfg


@pytest.fixture(scope="module")
def llama_run(tiny_llama, bios_dir, tmp_path_factory) -> Path:
    """Full fine-tuning with frozen embeddings and layer 0, which `unfrozen_parameters`
    tries to unfreeze again; recall on all three sets; lm-eval on the best model after."""
    tmp = tmp_path_factory.mktemp("plugin-llama")
    cfg = run_config(
        tiny_llama,
        bios_dir,
        tmp / "out",
        unfrozen_parameters=["model.embed_tokens.*", "model.layers.*", "lm_head.*", "model.norm.*"],
        engram_freeze_embeddings=True,
        engram_freeze_layers=[0],
        engram_eval_heldout=True,
        engram_eval_reverse=True,
        engram_eval_capacity=True,
        engram_post_eval=True,
        engram_post_eval_model="best",
        engram_post_eval_limit=EVAL_SAMPLES,
    )
    cfg.pop("metric_for_best_model")  # the plugin's own best save (HF's: the test below)
    # Through `accelerate launch`, as `axolotl train CONFIG` runs on a GPU box: the post-training
    # lm-eval and the release check below see the process layout users get.
    return train(cfg, tmp)


@pytest.fixture(scope="module")
def together(tiny_models, tiny_llama, bios_dir, tmp_path_factory) -> dict[str, Path]:
    """Two more real runs, trained one after the other in one process by Axolotl's own CLI
    (one import of the libraries): LoRA on GPT-2 with layer 0 frozen, and a Llama whose best
    checkpoint HF keeps by recall (metric_for_best_model)."""
    root = tmp_path_factory.mktemp("together")
    cfgs = {
        "gpt2-lora": run_config(
            tiny_models["gpt2"],
            bios_dir,
            root / "gpt2-lora",
            adapter="lora",
            lora_r=4,
            lora_alpha=8,
            lora_dropout=0.0,
            lora_target_modules=["c_attn", "c_proj", "c_fc"],
            lora_fan_in_fan_out=True,
            lora_mlp_kernel=False,
            lora_qkv_kernel=False,
            lora_o_kernel=False,  # Axolotl's Triton LoRA kernels need CUDA
            engram_freeze_layers=[0],
            engram_recall_eval=False,
        ),
        "llama-hf-best": run_config(
            tiny_llama,
            bios_dir,
            root / "llama-hf-best",
            metric_for_best_model="eval_engram_qa_acc_overall",
            greater_is_better=True,
            save_total_limit=1,
            early_stopping_patience=5,
        ),
    }
    cfgs["gpt2-lora"].pop("metric_for_best_model")  # ranks by recall, which is off there
    for name, cfg in cfgs.items():
        (root / f"{name}.yml").write_text(yaml.safe_dump(cfg))
    train_together([root / f"{name}.yml" for name in cfgs], root)
    for name, cfg in cfgs.items():
        error = Path(cfg["output_dir"]) / ERROR_FILE
        assert not error.exists(), f"{name}: " + error.read_text()[-4000:]
    return {name: Path(cfg["output_dir"]) for name, cfg in cfgs.items()}


@pytest.mark.slow
def test_frozen_parameters_are_bit_identical_and_the_rest_changed(llama_run, tiny_llama):
    before = load_file(tiny_llama / "model.safetensors")
    after = load_file(llama_run / "model.safetensors")
    assert set(before) == set(after)
    frozen = [k for k in before if k.startswith(("model.embed_tokens.", "model.layers.0."))]
    trained = [k for k in before if k.startswith("model.layers.1.") and k.endswith("proj.weight")]
    assert frozen and trained
    for k in frozen:
        assert torch.equal(before[k], after[k]), k
    for k in trained:
        assert not torch.equal(before[k], after[k]), k


@pytest.mark.slow
def test_best_model_and_scores_file(llama_run):
    (best,) = list(llama_run.glob(f"{BEST_PREFIX}*"))
    scores = json.loads((best / SCORES_FILE).read_text())
    assert best.name == f"{BEST_PREFIX}{scores['results']['train']['overall']:.4f}"
    assert scores["global_step"] in (3, 6)
    assert set(scores["results"]) == {"train", "heldout", "reverse"}
    for qset in ("train", "heldout"):
        assert set(scores["results"][qset]) == {*FIELDS, "overall", "overall_norm", "num_questions"}
        assert scores["results"][qset]["num_questions"] == 6 * EVAL_SAMPLES
    assert (best / "model.safetensors").exists() and (best / "tokenizer.json").exists()
    assert not list(llama_run.glob(f".{BEST_PREFIX}*"))  # no temp folder left


@pytest.mark.slow
def test_metrics_are_in_the_trainers_log_history(llama_run):
    state = json.loads((llama_run / "checkpoint-6" / "trainer_state.json").read_text())
    logged = [e for e in state["log_history"] if "eval_engram_qa_acc_overall" in e]
    assert [e["step"] for e in logged] == [0, 3, 6]  # the baseline, then every evaluation
    names = set().union(*logged)
    for field in FIELDS:
        assert f"eval_engram_qa_acc_{field}" in names and f"eval_engram_heldout_acc_{field}" in names
    assert {"eval_engram_qa_acc_overall_norm", "eval_engram_heldout_acc_overall", "eval_engram_reverse_acc"} <= names
    for e in logged:  # knowledge capacity (Physics of LM 3.3's bound) at every evaluation too
        assert e["eval_engram_capacity_bits"] == pytest.approx(
            e["eval_engram_capacity_name_bits"] + e["eval_engram_capacity_value_bits"]
        )
        assert e["eval_engram_capacity_bits_per_param"] >= 0


@pytest.mark.slow
def test_step_0_recall_is_the_untrained_models_recall(llama_run, tiny_llama, bios_dir):
    """The baseline the plugin logs before any update is the untrained model's own score."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engram_plugin.callbacks import HISTORY_FILE, metric_names

    step0 = json.loads((llama_run / HISTORY_FILE).read_text().splitlines()[0])
    assert step0["step"] == 0
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    evaluator = RecallEvaluator(
        bios_dir,
        AutoTokenizer.from_pretrained(tiny_llama),
        sets=["train", "heldout", "reverse"],
        limit=EVAL_SAMPLES,
        batch_size=8,
    )
    recall = {k: v for k, v in step0.items() if k.startswith("eval_engram_") and "_capacity_" not in k}
    assert recall == metric_names(evaluator.evaluate(model))
    # engram_eval_capacity: the untrained model's bound as engram-capacity computes it, on the run's own
    # biographies (the first train people); a random model stores nothing by the bound.
    from engram_eval.capacity_bound import BoundEvaluator
    from engram_eval.capacity_bound import metric_names as capacity_metrics

    trained = Path(yaml.safe_load((llama_run.parent / "config.yml").read_text())["datasets"][0]["path"]).stem
    bound = BoundEvaluator(bios_dir, AutoTokenizer.from_pretrained(tiny_llama), trained, EVAL_SAMPLES, split="train")
    expected = capacity_metrics(bound.evaluate(model))
    assert expected["eval_engram_capacity_bits"] == 0.0
    assert {k: v for k, v in step0.items() if "_capacity_" in k} == pytest.approx(expected, rel=1e-4, abs=1e-6)


@pytest.mark.slow
def test_in_training_recall_equals_lm_eval_on_the_same_checkpoint(llama_run):
    (best,) = list(llama_run.glob(f"{BEST_PREFIX}*"))
    ours = json.loads((best / SCORES_FILE).read_text())["results"]
    # The plugin's post-training lm-eval run scored this same checkpoint and sample.
    lm = json.loads(next((best / "lm_eval").rglob("results_*.json")).read_text())["results"]
    for field in FIELDS:
        assert ours["train"][field] == lm[f"bios_qa_{field}"]["acc,none"], field
        assert ours["heldout"][field] == lm[f"bios_qa_heldout_{field}"]["acc,none"], field
    assert ours["train"]["overall"] == pytest.approx(lm["bios_qa"]["acc,none"], abs=1e-12)
    assert ours["train"]["overall_norm"] == pytest.approx(lm["bios_qa"]["acc_norm,none"], abs=1e-12)
    assert ours["reverse"]["overall"] == lm["bios_qa_reverse"]["acc,none"]
    assert (best / "lm_eval" / "eval.log").exists()


@pytest.mark.slow
def test_training_is_released_before_the_post_training_lm_eval_starts(llama_run):
    """With engram_gc_freeze on (the default), the trainer, the model and the optimizer are
    gone (their weak references dead) when lm-eval loads the model again: the plugin unfreezes
    the collector at train end, and the first line of lm-eval's log says what it found."""
    (best,) = list(llama_run.glob(f"{BEST_PREFIX}*"))
    first = (best / "lm_eval" / "eval.log").read_text().splitlines()[0]
    assert first == "engram: released before lm-eval started: trainer, model, optimizer"


@pytest.mark.slow
def test_adapter_freezing_on_gpt2(together):
    out = together["gpt2-lora"]
    first = load_file(out / "checkpoint-3" / "adapter_model.safetensors")
    final = load_file(out / "adapter_model.safetensors")
    layer0 = [k for k in final if ".h.0." in k]
    layer1 = [k for k in final if ".h.1." in k and "lora_B" in k]
    assert layer0 and layer1
    for k in layer0:
        assert torch.equal(first[k], final[k]), k
        if "lora_B" in k:
            assert not final[k].any()  # LoRA's B starts at zero and was never updated
    assert all(final[k].any() for k in layer1)


# --------------------------------------------------------------------------- stopping rules


def fake_callback(**cfg) -> EngramCallback:
    base = {
        "output_dir": "/nonexistent",
        "engram_recall_eval": False,
        "engram_early_stopping_patience": None,
        "engram_stop_at_recall": None,
        "engram_freeze_embeddings": False,
        "engram_freeze_layers": None,
        "engram_save_best": False,
        "engram_gc_freeze": False,
    }
    # A trainer's accelerator gives the training's autocast; none here (fp32).
    trainer = SimpleNamespace(is_world_process_zero=lambda: True, accelerator=SimpleNamespace(autocast=nullcontext))
    return EngramCallback(SimpleNamespace(**{**base, **cfg}), trainer)


@pytest.mark.parametrize("freeze", [True, False])
def test_gc_freeze_at_the_start_of_training(freeze):
    import gc

    from engram_plugin.callbacks import engram_callbacks

    cfg = fake_callback(engram_gc_freeze=freeze).cfg
    trainer = fake_callback().trainer
    trainer.model = torch.nn.Linear(2, 2)
    callbacks = engram_callbacks(cfg, trainer)
    gc.unfreeze()
    try:
        for cb in callbacks:
            cb.on_train_begin(SimpleNamespace(eval_on_start=False), SimpleNamespace(global_step=0), None)
        assert (gc.get_freeze_count() > 0) is freeze
        for cb in callbacks:
            cb.on_train_end(SimpleNamespace(), SimpleNamespace(global_step=0, best_model_checkpoint=None), None)
        assert gc.get_freeze_count() == 0  # unfrozen at the end: the model can be collected
    finally:
        gc.unfreeze()


def test_the_plugin_hands_axolotl_one_callback_per_job_in_train_begin_order():
    from engram_plugin.callbacks import engram_callbacks

    cfg = fake_callback(engram_gc_freeze=True, engram_early_stopping_patience=2).cfg
    names = [type(cb).__name__ for cb in engram_callbacks(cfg, fake_callback().trainer)]
    assert names == [
        "GcFreeze",
        "Freezing",
        "EngramCallback",
        "LossRiseStop",
        "LogFile",
        "ProgressFile",
        "HandOptimizer",
    ]


@pytest.mark.parametrize(("freeze", "preprocess"), [(True, False), (False, False), (True, True)])
def test_gc_freeze_before_the_data_is_prepared_in_a_training_process(freeze, preprocess):
    """The plugin's load_datasets hook loads nothing (Axolotl loads the data) and, in a training
    process with engram_gc_freeze, freezes what the imports left before the packing sampler's
    gc.collect() calls; `axolotl preprocess` is left alone."""
    import gc

    from axolotl.utils.dict import DictDefault

    from engram_plugin import EngramPlugin

    gc.unfreeze()
    try:
        assert EngramPlugin().load_datasets(DictDefault(engram_gc_freeze=freeze), preprocess=preprocess) is None
        assert (gc.get_freeze_count() > 0) is (freeze and not preprocess)
    finally:
        gc.unfreeze()


@pytest.mark.slow  # ~25 s: 12 step counts, each four packings, as Axolotl counts them
def test_a_packed_runs_step_count_is_the_same_in_every_process():
    """Axolotl counts a packed run's batches per epoch over an unseeded RandomSampler (the least
    of four random packings) before anything seeds torch, and torch seeds its generator at
    random in each process: a borderline dataset (here 235 rows, ~30 bins of 256 tokens, as the
    reproduce study's mixed bioS run) gets 3 batches an epoch in some processes and 4 in others.
    The plugin's first hook seeds torch with the run's seed, so every process counts the same."""
    import numpy as np
    from axolotl.utils.dict import DictDefault
    from axolotl.utils.samplers.multipack import MultipackBatchSampler
    from torch.utils.data import RandomSampler

    from engram_plugin import EngramPlugin

    rng = np.random.default_rng(4)
    lengths = np.concatenate([rng.integers(55, 79, 60), rng.integers(17, 26, 175)])

    def batches_per_epoch(prior_state: int, plugin: bool) -> int:
        torch.manual_seed(prior_state)  # what the process happened to start with
        if plugin:
            EngramPlugin().load_datasets(DictDefault(seed=42, engram_gc_freeze=False))
        sampler = MultipackBatchSampler(
            sampler=RandomSampler(range(len(lengths))),
            lengths=lengths,
            batch_size=8,
            batch_max_len=256,
            bin_size=200,
            drop_last=True,
            num_processes=1,
        )
        return len(sampler)

    assert {batches_per_epoch(k, plugin=False) for k in range(6)} == {3, 4}  # Axolotl alone: either
    assert len({batches_per_epoch(k, plugin=True) for k in range(6)}) == 1  # with the plugin: one count


def test_early_stopping_needs_patience_rises_in_a_row():
    from engram_plugin.jobs import LossRiseStop, RunState

    cb = LossRiseStop(2, RunState(), fake_callback().trainer)
    control, state = SimpleNamespace(should_training_stop=False), SimpleNamespace(global_step=0)
    for loss, stop in [(3.0, False), (2.0, False), (2.5, False), (2.4, False), (2.6, False), (2.7, True)]:
        cb.on_evaluate(None, state, control, metrics={"eval_loss": loss})
        assert control.should_training_stop is stop, loss


def test_stop_at_recall(tmp_path):
    cb = fake_callback(engram_stop_at_recall=0.9, output_dir=str(tmp_path))
    cb.evaluator = SimpleNamespace(evaluate=lambda model, device: {"train": {"overall": 0.95, "overall_norm": 0.9}})
    cb.trainer.model, cb.trainer.args = None, SimpleNamespace(device="cpu")
    control = SimpleNamespace(should_training_stop=False)
    logs = cb._recall(SimpleNamespace(global_step=4, epoch=1.0), control)
    assert control.should_training_stop is True
    assert logs == {"eval_engram_qa_acc_overall": 0.95, "eval_engram_qa_acc_overall_norm": 0.9}
    (line,) = (tmp_path / "engram_recall.jsonl").read_text().splitlines()
    assert json.loads(line) == {
        "step": 4,
        "epoch": 1.0,
        "eval_engram_qa_acc_overall": 0.95,
        "eval_engram_qa_acc_overall_norm": 0.9,
    }


# --------------------------------------------------------------------------- distributed


@pytest.fixture(scope="module")
def two_ranks(tiny_llama, bios_dir, tmp_path_factory) -> dict:
    """Recall scored by 2 processes (torchrun, gloo), plain and through a model whose every
    forward is a collective: one launch for both tests below."""
    out = tmp_path_factory.mktemp("ranks") / "ranks.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29533",
            str(REPO / "tests/helpers/recall_ranks.py"),
            str(tiny_llama),
            str(bios_dir),
            "15",
            "3",
            "5",
            str(out),
        ],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_two_processes_give_the_same_recall_as_one(two_ranks, tiny_llama, bios_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    single = RecallEvaluator(bios_dir, tok, sets=["train", "heldout", "reverse"], limit=15, batch_size=8).evaluate(
        model
    )
    dist = two_ranks["plain"]
    assert dist["world"] == 2 and dist["shard"] < (6 * 15 * 2 + 15)  # each rank scored a part
    assert dist["results"] == single


@pytest.mark.slow
def test_a_sharded_model_makes_equal_calls_on_every_rank_and_the_same_totals(two_ranks, tiny_llama, bios_dir):
    """21 questions on 2 ranks, 5 per batch: 11 and 10 questions, 3 and 2 batches unless
    the short rank pads. Every forward is a collective, so unequal calls would hang."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    single = RecallEvaluator(bios_dir, tok, sets=["train", "reverse"], limit=3, batch_size=5).evaluate(model)
    got = two_ranks["sharded"]
    assert got["shards"] == [11, 10]
    assert got["calls"][0] == got["calls"][1] == 2 * 3  # three batches of two calls on each rank
    assert got["results"] == single


@pytest.mark.slow
def test_post_training_lm_eval_after_a_two_process_training(tiny_llama, bios_dir, tmp_path):
    """Axolotl destroys the process group before post_train_unload; the evaluation runs as
    its own process, once (rank 0), and writes lm-eval's own result file. With
    engram_effective_batch, a step of the two processes covers the rows of one step of one."""
    cfg = run_config(
        tiny_llama,
        bios_dir,
        tmp_path / "out",
        engram_post_eval=True,
        engram_post_eval_limit=4,
        engram_eval_heldout=True,
        engram_post_eval_log_samples=True,
        ddp_backend="gloo",
        engram_effective_batch=16,
    )
    cfg["plugins"] = ["helpers.cpu_processes.CpuProcessesPlugin", *cfg["plugins"]]
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [
            "axolotl",
            "train",
            str(config),
            "--launcher",
            "torchrun",
            "--",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29547",
        ],
        # ACCELERATE_USE_CPU: HF's data-parallel set-up on CPU processes (gloo), as on GPUs.
        env=cli_env(PYTHONPATH=str(REPO / "tests"), ACCELERATE_USE_CPU="true"),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=900,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    out = tmp_path / "out"
    (results,) = list((out / "lm_eval").rglob("results_*.json"))
    lm = json.loads(results.read_text())
    assert lm["results"]["bios_qa"]["alias"] == "bios_qa" and lm["config"]["limit"] == 4
    assert len(list((out / "lm_eval").rglob("samples_bios_qa_major_*.jsonl"))) == 1  # --log_samples
    # The two ranks scored recall together: every evaluation has all 6 x 12 train questions.
    history = [json.loads(line) for line in (out / "engram_recall.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [0, 3, 6]
    # Micro batch 8 on each of two ranks (the plugin's split of 16; Axolotl alone would take
    # 16 on each, and a step would cover twice the rows): 46 steps an epoch, as on one process.
    assert history[1]["epoch"] == pytest.approx(3 / 46)
    (best,) = best_dirs(out)
    assert best.name == f"{BEST_PREFIX}{max(h['eval_engram_qa_acc_overall'] for h in history[1:]):.4f}"


@pytest.mark.slow
def test_hf_keeps_the_best_checkpoint_by_recall_and_the_plugin_names_it(together):
    """metric_for_best_model: eval_engram_qa_acc_overall works with HF's own machinery;
    best_model_qa_<acc> is a link to that checkpoint (no copy); Axolotl's early stopping
    sees the metric too."""
    out = together["llama-hf-best"]
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    history = [json.loads(line) for line in (out / "engram_recall.jsonl").read_text().splitlines()]
    evals = {h["step"]: h["eval_engram_qa_acc_overall"] for h in history if h["step"] > 0}
    best_step = max(evals, key=lambda step: (evals[step], -step))  # HF keeps the first of equals
    assert state["best_metric"] == evals[best_step]
    assert state["best_model_checkpoint"] == str(out / f"checkpoint-{best_step}")
    (link,) = best_dirs(out)
    assert link.is_symlink() and link.resolve() == out / f"checkpoint-{best_step}"
    assert link.name == f"{BEST_PREFIX}{evals[best_step]:.4f}"
    assert not list(out.glob(f".{BEST_PREFIX}*"))  # the plugin saved nothing itself
