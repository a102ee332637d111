"""engram-localize probe: an attribute encoded by construction is decoded exactly; an untrained
model and shuffled labels sit at chance; a rerun is byte-identical; positions are the right tokens."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers.common import cli_env, run_generate

from engram_data.contract import FIELDS, read_jsonl
from engram_localize.probe import NAME, Features, positions, probe_table
from engram_localize.probe_report import VIEWS, decodable_at_name

VALUES = 4  # values per attribute: 4 classes, ~50 train and ~50 heldout people each
CHANCE_MARGIN = 0.12  # |accuracy - 1/4| on 200 heldout people: about 4 standard errors


@pytest.fixture(scope="module")
def few_values(tmp_path_factory):
    out = tmp_path_factory.mktemp("probe") / "data"
    proc = run_generate("--num-people", "400", "--values-per-field", str(VALUES), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def test_an_attribute_encoded_by_construction_is_decoded_exactly(few_values):
    people = read_jsonl(few_values / "people.jsonl")
    rng = np.random.default_rng(0)
    codes = {f: sorted({p[f] for p in people}) for f in FIELDS}
    # Layer 1 holds each attribute as a one-hot block plus noise; layer 0 holds noise only.
    signal = np.array([np.concatenate([np.eye(VALUES)[codes[f].index(p[f])] for f in FIELDS]) for p in people])
    noise = rng.normal(size=(len(people), 2, signal.shape[1]))
    x = noise * 0.1 + np.stack([np.zeros_like(signal), signal], axis=1)
    rows = probe_table(Features({("Q", NAME): x}, people), None, seed=0, progress=False)
    layer1 = [r for r in rows if r["layer"] == 1]
    assert [r["accuracy"] for r in layer1] == [1.0] * len(FIELDS)
    assert all(r["scored"] == r["heldout_people"] == 200 and r["classes"] == VALUES for r in rows)
    for r in rows:  # noise alone (layer 0): chance, with true labels and shuffled ones
        if r["layer"] == 0:
            assert abs(r["accuracy"] - 1 / VALUES) <= CHANCE_MARGIN, r
            assert abs(r["shuffled"] - 1 / VALUES) <= CHANCE_MARGIN, r
    # Where the features hold the class, shuffled labels teach one random mapping of the four
    # classes: chance only on average over fields, not field by field.
    assert abs(np.mean([r["shuffled"] for r in layer1]) - 1 / VALUES) <= 0.2
    assert decodable_at_name(pd.DataFrame(rows)) == list(FIELDS)


def test_positions_are_the_name_end_and_the_token_before_each_value(few_values, tiny_llama):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    for p in read_jsonl(few_values / "people.jsonl")[:20]:
        text = p["bioS"]
        enc = tokenizer(text, return_offsets_mapping=True)
        spans = enc["offset_mapping"]
        at = positions(tokenizer, text, p["name"], {f: p[f] for f in FIELDS})
        assert spans[at[NAME]][1] == len(p["name"])  # bioS opens with the name
        for field in FIELDS:
            nxt = spans[at[f"before {field}"] + 1]
            assert nxt[0] <= text.index(p[field]) < nxt[1], (field, text)  # the next token starts the value


@pytest.fixture(scope="module")
def untrained_probe(few_values, tiny_llama, tmp_path_factory):
    outs = []
    for run in ("a", "b"):
        out = tmp_path_factory.mktemp("probe-out") / run
        cmd = [
            sys.executable,
            "-m",
            "engram_localize.cli",
            "probe",
            "--model",
            str(tiny_llama),
            "--data",
            str(few_values),
            "--out",
            str(out),
            "--no-progress",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env())
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(out / "probe")
    return outs


def test_an_untrained_model_and_shuffled_labels_sit_at_chance(untrained_probe):
    frame = pd.read_csv(untrained_probe[0] / "probe.csv")
    for name, (_, select) in VIEWS.items():
        rows = frame[select(frame)]
        if name == "P_before":  # the employer's name precedes the company city: context, not memory
            rows = rows[rows.field != "company_city"]
        assert len(rows) == len(FIELDS) * 3 - (name == "P_before") * 3  # embeddings + 2 layers
        for column in ("accuracy", "shuffled", "untrained"):
            worst = (rows[column] - 1 / VALUES).abs().max()
            assert worst <= CHANCE_MARGIN, (name, column, worst)
    assert (
        "decodable from the name (Q-probe, alone or with the end token; best layer, at least 0.2 above every floor): none"
        in ((untrained_probe[0] / "probe.md").read_text())
    )
    assert (untrained_probe[0] / "probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_rerun_is_byte_identical(untrained_probe):
    for name in ("probe.json", "probe.csv", "probe.md"):
        assert (untrained_probe[0] / name).read_bytes() == (untrained_probe[1] / name).read_bytes(), name
    # Sites: P at the name and before each of 6 values, Q at the name and at the name + end token.
    assert len(json.loads((untrained_probe[0] / "probe.json").read_text())) == 9 * 3 * len(FIELDS)


def test_bad_input_is_one_line(few_values, tiny_llama, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "engram_localize.cli",
        "probe",
        "--model",
        str(tiny_llama),
        "--data",
        str(few_values),
        "--out",
        str(tmp_path / "o"),
        "--variant",
        "bioS_permute",
        "--no-progress",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env())
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .endswith("the data has no bioS_permute texts; pass --variant with one it has")
    )
    assert not (tmp_path / "o" / "probe").exists()


@pytest.mark.slow
def test_make_probe_end_to_end_at_a_tiny_size(tmp_path):
    """`make probe`'s glue: data in the probe's regime, a training, lm-eval's extraction, the
    probe, and the study's table (one variant, a 1-layer model: the numbers are not the point)."""
    cmd = [
        sys.executable,
        "-m",
        "engram_run",
        "probe",
        "--people",
        "60",
        "--values-per-field",
        "4",
        "--multi5-epochs",
        "2",
        "--hidden",
        "32",
        "--layers",
        "1",
        "--vocab-size",
        "600",
        "--variants",
        "bioS_multi5_permutes",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=cli_env())
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    out = tmp_path / "results" / "probe"
    rows = json.loads((out / "probes.json").read_text())
    row = rows["bioS_multi5_permutes"]
    assert row["epochs"] == 2 and row["questions"] == {"heldout_exact": 180, "heldout": 180}
    assert set(row["q_probe_best"]) == set(FIELDS) and set(row["decodable_at_name"]) <= set(FIELDS)
    assert "| `bioS_multi5_permutes` | 2 |" in (out / "probes.md").read_text()
    frame = pd.read_csv(out / "bioS_multi5_permutes" / "probe" / "probe.csv")
    # 9 sites (P at the name and before 6 values, Q at the name and at the name + end token) x 2 layers
    assert len(frame) == 9 * 2 * len(FIELDS) and set(frame.scored) == {30}  # 4 values: every one seen in training
    manifest = json.loads((tmp_path / "data" / "probe" / "manifest.json").read_text())
    assert manifest["args"]["values_per_field"] == 4
