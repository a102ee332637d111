"""engram-localize on tiny models: diff reports exactly the changes that were made, graft
and prune choose exactly round(f × n_changed) weights with ties in streaming order, recall
at fraction 1 is the tuned model's, and causal tracing restores exactly the clean (every
layer) or the corrupted (none) probability; a full fine-tune and a LoRA adapter both work."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers.common import REPO, cli_env
from helpers.memorize import memorize
from safetensors.torch import load_file, save_file

from engram_data.contract import FIELDS
from engram_localize import cli
from engram_localize.checkpoints import Checkpoint, LocalizeError, classify, load_model, load_tokenizer
from engram_localize.graft import curve
from engram_localize.select import cuts, groups_of, masks
from engram_localize.trace import CATEGORIES, KINDS, Tracer, prompts

LIMIT = 12  # questions per field memorized and scored
# Known changes: tensor -> (row, columns, value); the base holds 0 there, so every |Δ| is exact.
CHANGES = {
    "model.layers.0.mlp.down_proj.weight": (0, 20, 0.5),
    "model.layers.1.self_attn.q_proj.weight": (0, 30, -0.002),
    "model.embed_tokens.weight": (5, 10, 0.05),
}
N_CHANGED = 60


def copy_model(src: Path, dst: Path, change) -> Path:
    """``src``'s files with its weights passed through ``change(name, tensor)``."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            (dst / f.name).write_bytes(f.read_bytes())
    tensors = load_file(src / "model.safetensors")
    save_file(
        {k: change(k, v.clone()) for k, v in tensors.items()}, dst / "model.safetensors", metadata={"format": "pt"}
    )
    return dst


@pytest.fixture(scope="module")
def known(tiny_llama, tmp_path_factory) -> tuple[Path, Path]:
    """A base with zeros where the tuned model holds the CHANGES, identical elsewhere."""
    root = tmp_path_factory.mktemp("known")

    def zeroed(name, t):
        if name in CHANGES:
            row, cols, _ = CHANGES[name]
            t[row, :cols] = 0.0
        return t

    def changed(name, t):
        t = zeroed(name, t)
        if name in CHANGES:
            row, cols, value = CHANGES[name]
            t[row, :cols] = value
        return t

    return copy_model(tiny_llama, root / "base", zeroed), copy_model(tiny_llama, root / "tuned", changed)


def run_cli(*args: str) -> None:
    assert cli.main([*args, "--no-progress"]) == 0


def test_diff_reports_exactly_the_changed_tensors_counts_and_norms(known, tmp_path):
    base, tuned = known
    run_cli("diff", "--base", str(base), "--tuned", str(tuned), "--out", str(tmp_path), "--thresholds", "1e-3,0.01,0.1")
    result = json.loads((tmp_path / "diff" / "diff.json").read_text())
    rows = {r["name"]: r for r in result["tensors"]}
    assert {n for n, r in rows.items() if r["changed"]} == set(CHANGES)
    base_t = load_file(base / "model.safetensors")
    for name, (_, cols, value) in CHANGES.items():
        r = rows[name]
        assert r["changed"] == cols
        assert r["l2"] == pytest.approx(math.sqrt(cols) * abs(value), rel=1e-6)
        assert r["relative"] == pytest.approx(r["l2"] / float(base_t[name].double().norm()), rel=1e-6)
        assert [r["above_0.001"], r["above_0.01"], r["above_0.1"]] == [
            cols * (abs(value) > t) for t in (1e-3, 0.01, 0.1)
        ]
    groups = {(g["layer"], g["module"]): g for g in result["groups"]}
    assert {k for k, g in groups.items() if g["changed"]} == {
        (0, "mlp.down"),
        (1, "attn.q"),
        ("outside layers", "embed"),
    }
    assert result["total"]["changed"] == N_CHANGED
    assert result["total"]["numel"] == sum(t.numel() for t in base_t.values())
    for f in ("tensors.csv", "groups.csv", "heatmap.png", "diff.md", "manifest.json"):
        assert (tmp_path / "diff" / f).stat().st_size > 0
    assert "## What changed" in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize(
    "scope, fraction, chosen",
    [
        ("global", 0.25, {"model.layers.0.mlp.down_proj.weight": 15}),  # 15 of 20 tied at 0.5: the first 15
        ("global", 0.5, {"model.layers.0.mlp.down_proj.weight": 20, "model.embed_tokens.weight": 10}),
        (
            "global",
            0.6,
            {
                "model.layers.0.mlp.down_proj.weight": 20,
                "model.embed_tokens.weight": 10,
                "model.layers.1.self_attn.q_proj.weight": 6,
            },
        ),
        (
            "module",
            0.5,
            {
                "model.layers.0.mlp.down_proj.weight": 10,
                "model.embed_tokens.weight": 5,
                "model.layers.1.self_attn.q_proj.weight": 15,
            },
        ),
        (
            "layer",
            0.5,
            {
                "model.layers.0.mlp.down_proj.weight": 10,
                "model.embed_tokens.weight": 5,
                "model.layers.1.self_attn.q_proj.weight": 15,
            },
        ),
    ],
)
def test_top_k_is_exact_with_ties_in_streaming_order(known, scope, fraction, chosen):
    base, tuned = Checkpoint(known[0]), Checkpoint(known[1])
    names = base.names()
    group = groups_of(names, scope)
    plan = cuts(base, tuned, names, group, [fraction])[fraction]
    assert sum(c.n_changed for c in plan.values()) == N_CHANGED
    picked = {name: m for name, _, _, m in masks(base, tuned, names, group, plan) if m.any()}
    assert {n: int(m.sum()) for n, m in picked.items()} == chosen
    for name, mask in picked.items():
        row = CHANGES[name][0]
        assert mask[row, : chosen[name]].all()  # the first ones in row-major order


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.6, 1.0])
def test_graft_and_prune_models_take_round_f_n_weights(known, tmp_path, fraction):
    base_dir, tuned_dir = known
    base, tuned = load_file(base_dir / "model.safetensors"), load_file(tuned_dir / "model.safetensors")
    k = round(fraction * N_CHANGED)
    for mode, start, end in (("graft", base, tuned), ("prune", tuned, base)):
        out = tmp_path / mode
        run_cli(
            mode, "--base", str(base_dir), "--tuned", str(tuned_dir), "--save", str(out), "--fraction", str(fraction)
        )
        saved = load_file(out / "model.safetensors")
        assert sum(int((saved[n] != start[n]).sum()) for n in saved) == k
        if fraction == 0:
            assert all(torch.equal(saved[n], start[n]) for n in saved)
        if fraction == 1:
            assert all(torch.equal(saved[n], end[n]) for n in saved)
        for n in saved:  # every weight is the start's or the end's, bit for bit
            assert bool(((saved[n] == start[n]) | (saved[n] == end[n])).all())


@pytest.fixture(scope="module")
def full_run(tiny_llama, bios_dir, tmp_path_factory) -> Path:
    model, tok = load_model(tiny_llama), load_tokenizer(tiny_llama)
    memorize(model, tok, bios_dir, LIMIT)
    out = tmp_path_factory.mktemp("full") / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def lora_run(tiny_llama, bios_dir, tmp_path_factory) -> Path:
    from peft import LoraConfig, get_peft_model

    tok = load_tokenizer(tiny_llama)
    model = get_peft_model(
        load_model(tiny_llama),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=True),
    )
    memorize(model, tok, bios_dir, LIMIT, steps=150, lr=1e-2)
    out = tmp_path_factory.mktemp("lora") / "adapter"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_recall_at_fraction_1_is_the_tuned_models_and_at_0_the_bases(full_run, tiny_llama, bios_dir):
    tok = load_tokenizer(full_run)
    result = curve("graft", tiny_llama, full_run, bios_dir, [0, 0.01, 1], limit=LIMIT, tokenizer=tok, progress=False)
    ref, points = result["reference"], {p["fraction"]: p for p in result["points"]}
    assert ref["tuned"]["train"]["overall"] >= 0.9 > 0.5 > ref["base"]["train"]["overall"]  # memorized, not chance
    assert points[1]["recall"] == ref["tuned"] and points[0]["recall"] == ref["base"]
    assert points[1]["chosen"] == result["n_changed"] and points[0]["chosen"] == 0
    assert points[0.01]["chosen"] == round(0.01 * result["n_changed"])
    pruned = curve("prune", tiny_llama, full_run, bios_dir, [0, 1], limit=LIMIT, tokenizer=tok, progress=False)
    p = {q["fraction"]: q for q in pruned["points"]}
    assert p[0]["recall"] == ref["tuned"] and p[1]["recall"] == ref["base"]


@pytest.fixture(scope="module")
def tracer(full_run) -> Tracer:
    return Tracer(load_model(full_run), load_tokenizer(full_run))


def test_tracing_restores_the_clean_probability_with_every_layer_and_the_corrupted_with_none(tracer, bios_dir):
    # Of the memorized questions, the one the noise hurts most (the fixture memorized only a
    # few people per field, so for many questions the seen value is told apart without the name).
    runs = []
    for i, (_, prompt) in enumerate(prompts(bios_dir, tracer.tokenizer, fields=("birth_city",))["birth_city"][:LIMIT]):
        probs, clean = tracer.clean(prompt)
        runs.append(
            (
                float(tracer.run(prompt, tracer.noise(prompt, i), [{}], "hidden", clean)[0])
                - float(probs[prompt.label]),
                i,
                prompt,
                probs,
                clean,
            )
        )
    _, i, prompt, probs, clean = min(runs, key=lambda r: r[0])
    noise = tracer.noise(prompt, i)
    corrupted = tracer.run(prompt, noise, [{}], "hidden", clean)
    assert float(corrupted[0]) < float(probs[prompt.label]) - 0.3  # the noise does hurt
    every = {layer: None for layer in range(tracer.n_layers)}
    assert float(tracer.run(prompt, noise, [every], "hidden", clean)[0]) == float(probs[prompt.label])
    assert float(tracer.run(prompt, None, [{}], "hidden", clean)[0]) == float(probs[prompt.label])
    result = tracer.trace(prompt, i)
    assert result["clean"] == float(probs[prompt.label]) and result["corrupted"] == float(corrupted[0])
    assert all(result["restored"][k].shape == (tracer.n_layers, len(prompt.context)) for k in KINDS)


def test_tracing_some_layers_gives_exactly_their_rows_of_the_full_trace(tracer, full_run, bios_dir):
    """--layers: the chosen layers' rows of the heatmaps, the same numbers as tracing every layer."""
    one = Tracer(load_model(full_run), load_tokenizer(full_run), layers=[1])
    for i, (_, prompt) in enumerate(prompts(bios_dir, tracer.tokenizer, fields=("birth_city",))["birth_city"][:LIMIT]):
        full = tracer.trace(prompt, i)
        if full is None:
            continue
        part = one.trace(prompt, i)
        assert (part["clean"], part["corrupted"]) == (full["clean"], full["corrupted"])
        for kind in KINDS:
            assert torch.equal(part["restored"][kind], full["restored"][kind][1:2])
        break
    else:
        pytest.fail("no question answered correctly")
    with pytest.raises(LocalizeError, match="layers 0 to 1"):
        Tracer(load_model(full_run), load_tokenizer(full_run), layers=[0, 2])


def test_subject_positions_are_the_names_tokens(tracer, bios_dir):
    row, prompt = prompts(bios_dir, tracer.tokenizer, fields=("major",))["major"][0]
    s0, s1 = prompt.subject
    name = tracer.tokenizer.decode(prompt.context[s0:s1]).strip()
    assert name in row["question"] and len(name.split()) == 3  # first, middle and last name
    cats = prompt.categories()
    assert cats[s1 - 1] == CATEGORIES.index("last subject") and cats[-1] == CATEGORIES.index("last token")


def test_trace_cli_traces_the_fields_and_layers_asked(full_run, bios_dir, tmp_path):
    run_cli(
        "trace", "--model", str(full_run), "--data", str(bios_dir), "--out", str(tmp_path), "--limit", "1",
        "--fields", "major,birth_city", "--layers", "1",
    )  # fmt: skip
    result = json.loads((tmp_path / "trace" / "trace.json").read_text())
    assert set(result["fields"]) == {"birth_city", "major", "all fields"} and result["traced_layers"] == [1]
    assert all(len(result["fields"][f]["heatmaps"][k]) == 1 for f in result["fields"] for k in KINDS)
    assert "layer 1" in (tmp_path / "trace" / "trace.md").read_text()


def test_trace_cli_writes_heatmaps_of_layers_by_positions(full_run, bios_dir, tmp_path):
    run_cli("trace", "--model", str(full_run), "--data", str(bios_dir), "--out", str(tmp_path), "--limit", "2")
    result = json.loads((tmp_path / "trace" / "trace.json").read_text())
    assert result["positions"] == list(CATEGORIES) and result["layers"] == 2
    for field in (*FIELDS, "all fields"):
        for kind in KINDS:
            grid = result["fields"][field]["heatmaps"][kind]
            assert len(grid) == 2 and all(len(row) == len(CATEGORIES) for row in grid)
    assert result["fields"]["all fields"]["traced"] == 2 * len(FIELDS)
    import matplotlib.image

    assert matplotlib.image.imread(tmp_path / "trace" / "trace.png").shape[2] == 4
    assert "## Which states carry the fact" in (tmp_path / "summary.md").read_text()


def test_a_lora_adapter_is_merged_and_localized(lora_run, tiny_llama, bios_dir, tmp_path):
    out = tmp_path / "loc"
    run_cli("diff", "--tuned", str(lora_run), "--out", str(out))  # the base named by the adapter
    rows = json.loads((out / "diff" / "diff.json").read_text())["tensors"]
    changed = {classify(r["name"])[1] for r in rows if r["changed"]}
    assert changed == {"attn.q", "attn.v", "mlp.down"}  # exactly the adapter's target modules
    run_cli(
        "graft",
        "--tuned",
        str(lora_run),
        "--data",
        str(bios_dir),
        "--out",
        str(out),
        "--fractions",
        "0,0.1,1",
        "--limit",
        str(LIMIT),
    )
    graft = json.loads((out / "graft" / "graft.json").read_text())
    assert graft["points"][-1]["recall"] == graft["reference"]["tuned"]
    assert graft["reference"]["tuned"]["train"]["overall"] > graft["reference"]["base"]["train"]["overall"] + 0.3
    run_cli("trace", "--model", str(lora_run), "--data", str(bios_dir), "--out", str(out), "--limit", "1")
    assert not list(out.glob(".merged-*"))  # the merged copy is gone
    assert {p.name for p in out.iterdir()} >= {"diff", "graft", "trace", "summary.md"}


def test_the_console_script_is_installed():
    import subprocess
    import sys

    script = Path(sys.executable).parent / "engram-localize"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, env=cli_env(), cwd=REPO)
    assert proc.returncode == 0 and all(c in proc.stdout for c in ("diff", "graft", "prune", "trace"))
