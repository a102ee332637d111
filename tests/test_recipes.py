"""axolotl_configs: every recipe passes Axolotl's schema; a CPU variant of every
architecture x method trains on a tiny local model and leaves what lm-eval can score."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from helpers.common import family_of
from helpers.train_in_one_process import ERROR_FILE, train_together

from engram_run.runs.recipes import RECIPES_DIR, RECOMMENDED, cpu_variant, load_recipe, validate

RECIPES = sorted(RECIPES_DIR.glob("*.yml"))
# (architecture, method) -> the recipe whose CPU variant trains; every pair the recipes use.
TRAINED = {
    ("gpt2", "full"): "gpt2-full.yml",
    ("gpt2", "lora"): "gpt2-lora.yml",
    ("gptj", "lora"): "gptj6b-lora.yml",
    ("gptj", "full"): "gptj6b-full.yml",  # ZeRO-3 recipe
    ("gptj", "qlora"): "gptj6b-qlora.yml",
    ("gpt_neox", "qlora"): "neox20b-qlora.yml",
    ("gpt_neox", "lora"): "neox20b-lora.yml",
    ("gpt_neox", "full"): "neox20b-full.yml",  # FSDP2 recipe
    ("llama", "full"): "llama1b-full.yml",
    ("llama", "lora"): "llama3b-lora.yml",
    ("llama", "qlora"): "llama8b-qlora.yml",
    ("olmo2", "lora"): "olmo2-7b-lora.yml",
    ("olmo2", "qlora"): "olmo2-13b-qlora.yml",
}
HEADERS = ["# Model", "# Data", "# Adapter", "# Training", "# Evaluation", "# Plugin: engram"]


def method_of(cfg: dict) -> str:
    return {None: "full", "lora": "lora", "qlora": "qlora"}[cfg.get("adapter")]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_passes_axolotl_validation(recipe):
    cfg = load_recipe(recipe)
    validated = validate(cfg)
    assert validated["base_model"] == cfg["base_model"]
    assert validated.get("lr_scheduler") == ("constant" if recipe.name == "tiny-full.yml" else "constant_with_warmup")
    text = recipe.read_text()
    positions = [text.index(h + "\n") for h in HEADERS]
    assert positions == sorted(positions), "section headers out of order"
    assert validated["val_set_size"] > 0  # validation loss is watched


def test_every_architecture_and_method_in_use_is_trained_below():
    used = {(family_of(c), method_of(c)) for c in map(load_recipe, RECIPES) if "tiny" not in c["base_model"]}
    assert used == set(TRAINED)


def test_recipes_handle_architecture_quirks():
    for recipe in RECIPES:
        cfg = load_recipe(recipe)
        if recipe.name == "tiny-full.yml":
            continue
        fam = family_of(cfg)
        assert cfg["special_tokens"]["pad_token"]
        assert bool(cfg.get("sample_packing")) == (fam in ("llama", "olmo2"))  # what Axolotl can pack
        if cfg.get("adapter"):
            expected = {
                "gpt2": ["c_attn", "c_proj", "c_fc"],
                "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
                "gptj": ["q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_out"],
            }.get(fam)
            if expected:
                assert cfg["lora_target_modules"] == expected
            else:
                assert cfg["lora_target_linear"] is True
        assert cfg["datasets"][0]["path"] == "data/bios/train/bioS_multi5_permutes.jsonl"


def test_shipped_deepspeed_configs_are_referenced_and_exist():
    refs = {load_recipe(r).get("deepspeed") for r in RECIPES} - {None}
    assert refs == {"axolotl_configs/deepspeed/zero2.json", "axolotl_configs/deepspeed/zero3.json"}
    for ref in refs:
        stage = json.loads((RECIPES_DIR.parent / ref).read_text())["zero_optimization"]["stage"]
        assert f"zero{stage}.json" in ref


def test_readme_table_matches_the_files():
    readme = (RECIPES_DIR / "README.md").read_text()
    rows = re.findall(r"^\| `([\w.-]+\.yml)` \| (.*?) \| (.*?) \| (.*?) \| (.*?) \| `(.*?)` \|$", readme, re.M)
    assert sorted(r[0] for r in rows) == sorted(p.name for p in RECIPES)
    for name, _model, _method, recommended, memory, command in rows:
        head = (RECIPES_DIR / name).read_text().splitlines()[:6]
        assert f"# GPU memory: {memory}" in "\n".join(head), name
        assert any(command in line for line in head), name
        model, method = name.removesuffix(".yml").rsplit("-", 1)
        assert (recommended == "yes") == (RECOMMENDED[model] == method), name


@pytest.fixture(scope="module")
def trained(tiny_models, bios_dir, tmp_path_factory) -> dict:
    """The CPU variant of each recipe in TRAINED, 2 steps on its architecture's tiny model, all
    trained by Axolotl's own CLI in one process (one import of the libraries, not thirteen).
    The recipe is under test here, not the launcher: `make train` and the studies launch
    theirs as their own processes (the demo, the sweeps, the plugin's runs)."""
    root = tmp_path_factory.mktemp("recipes")
    runs, configs = {}, []
    for (arch, method), name in TRAINED.items():
        recipe = load_recipe(RECIPES_DIR / name)
        work = root / f"{arch}-{method}"
        cfg = cpu_variant(recipe, tiny_models[arch], work / "out", data_dir=bios_dir, max_steps=2)
        for ds in cfg["datasets"]:
            ds["split"] = "train[:256]"  # the recipes' own cap-on-samples option
        work.mkdir()
        (work / "config.yml").write_text(yaml.safe_dump(cfg))
        configs.append(work / "config.yml")
        runs[(arch, method)] = (recipe, cfg)
    train_together(configs, root)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "method"), list(TRAINED), ids=lambda v: str(v))
def test_cpu_variant_trains_and_is_scored_by_lm_eval(arch, method, trained, tiny_models, task_manager):
    from lm_eval import simple_evaluate

    recipe, cfg = trained[(arch, method)]
    out = Path(cfg["output_dir"])
    error = out / ERROR_FILE
    assert not error.exists(), error.read_text()[-4000:]
    # Everything else is the recipe's own setting.
    for key in ("micro_batch_size", "gradient_accumulation_steps", "learning_rate", "lr_scheduler", "sequence_len"):
        assert cfg[key] == recipe[key]
    if method == "full":
        assert (out / "model.safetensors").exists()
        model_args = f"pretrained={out},dtype=float32"
    else:
        adapter = json.loads((out / "adapter_config.json").read_text())
        assert (adapter["r"], adapter["lora_alpha"]) == (recipe["lora_r"], recipe["lora_alpha"])
        if "lora_target_modules" in recipe:
            assert set(adapter["target_modules"]) == set(recipe["lora_target_modules"])
        model_args = f"pretrained={tiny_models[arch]},peft={out},dtype=float32"
    results = simple_evaluate(
        model="hf", model_args=model_args, tasks=["bios_qa"], limit=2, device="cpu", task_manager=task_manager
    )
    for field in ("birth_date", "birth_city", "university", "major", "employer", "company_city"):
        assert results["results"][f"bios_qa_{field}"]["acc,none"] in (0.0, 0.5, 1.0)
    assert "acc,none" in results["results"]["bios_qa"]


def test_every_recipe_name_states_its_method_and_every_model_has_a_recommended_one():
    from engram_run.runs.recipes import METHODS, RECIPES_DIR, RECOMMENDED, load_recipe, models, recipe_method

    for path in RECIPES_DIR.glob("*.yml"):
        model, method = path.stem.rsplit("-", 1)
        assert method in METHODS and recipe_method(load_recipe(path)) == method, path.name
    assert set(RECOMMENDED) == set(models())
    for model, method in RECOMMENDED.items():
        assert (RECIPES_DIR / f"{model}-{method}.yml").exists(), model


@pytest.mark.parametrize(
    ("name", "method", "file"),
    [
        ("llama3b", None, "llama3b-lora.yml"),  # the recommended method
        ("llama3b.yml", None, "llama3b-lora.yml"),  # the old bare file name, through the table
        ("neox20b.yml", None, "neox20b-qlora.yml"),
        ("gpt2", None, "gpt2-full.yml"),
        ("gpt2", "lora", "gpt2-lora.yml"),
        ("llama8b-qlora", None, "llama8b-qlora.yml"),  # a file's own name
        ("tiny", None, "tiny-full.yml"),
    ],
)
def test_a_model_or_old_recipe_name_finds_its_file(name, method, file):
    from engram_run.runs.recipes import recipe_path

    assert recipe_path(name, method).name == file


def test_an_unknown_model_or_missing_method_names_what_there_is():
    from engram_run.runs.recipes import RunError, recipe_path

    with pytest.raises(RunError, match="no recipe for MODEL=gpt5; choose from gpt2, gpt2-large"):
        recipe_path("gpt5")
    with pytest.raises(RunError, match="no qlora recipe for gpt2; its recipes use full, lora"):
        recipe_path("gpt2", "qlora")
