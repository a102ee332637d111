"""The reversal remedies of the generator (engram_data/reversal.py, generator 2.2): exact
checks of the texts, and that asking for them changes no other file."""

from __future__ import annotations

import filecmp
import json
import re

import pytest
from helpers.common import NUM_PEOPLE, SEED, run_generate

from engram_data.contract import DEFAULT_VARIANTS, FIELDS, REVERSAL_VARIANTS, VARIANTS, qa_text, read_jsonl
from engram_data.reversal import VALUE_FIRST, entity_reversed

VALUE_FIRST_V, REVERSED_V = REVERSAL_VARIANTS


@pytest.fixture(scope="module")
def remedies(tmp_path_factory):
    out = tmp_path_factory.mktemp("remedies") / "bios"
    variants = ",".join([*DEFAULT_VARIANTS, *REVERSAL_VARIANTS])
    proc = run_generate("--num-people", str(NUM_PEOPLE), "--seed", str(SEED), "--out", str(out), "--variants", variants)
    assert proc.returncode == 0, proc.stderr
    return out


def test_remedies_are_not_bios_variants():
    assert not set(REVERSAL_VARIANTS) & set(VARIANTS)  # never in make reproduce or the subject-first checks


def test_asking_for_the_remedies_leaves_every_other_file_as_it_was(bios_dir, remedies):
    theirs = sorted(str(p.relative_to(bios_dir)) for p in bios_dir.rglob("*.jsonl"))
    ours = sorted(str(p.relative_to(remedies)) for p in remedies.rglob("*.jsonl"))
    assert ours == sorted([*theirs, *(f"train/{v}.jsonl" for v in REVERSAL_VARIANTS)])
    theirs.remove("people.jsonl")
    match, mismatch, errors = filecmp.cmpfiles(bios_dir, remedies, theirs, shallow=False)
    assert (sorted(match), mismatch, errors) == (theirs, [], [])
    rows = [{k: v for k, v in p.items() if k not in REVERSAL_VARIANTS} for p in read_jsonl(remedies / "people.jsonl")]
    assert rows == read_jsonl(bios_dir / "people.jsonl")
    assert json.loads((remedies / "manifest.json").read_text())["generator_version"] == "2.6"


def test_value_first_states_every_value_before_the_full_name(remedies):
    for p in read_jsonl(remedies / "people.jsonl"):
        bios = p[VALUE_FIRST_V]
        assert len(bios) == 5 and len(set(bios)) == 5
        for bio in bios:
            assert bio.count(p["name"]) == len(FIELDS)  # every sentence names the person in full
            for field in FIELDS:  # the value comes before the name in its own sentence
                at = bio.index(p[field])
                assert bio.find(p["name"], at) > at and p["name"] not in bio[bio.rfind(".", 0, at) + 1 : at], bio
    for field, templates in VALUE_FIRST.items():
        assert all(t.find("{v}") < t.find("{n}") and t.count("{n}") == 1 for t in templates), field


def test_entity_reversal_keeps_the_name_and_values_whole_and_reverses_the_rest(remedies):
    assert entity_reversed("Ada Lee King was born on March 3, 1990.", ["Ada Lee King", "March 3, 1990"]) == (
        ". March 3, 1990 on born was Ada Lee King"
    )
    for p in read_jsonl(remedies / "people.jsonl"):
        entities = [p["name"], *(p[f] for f in FIELDS)]
        forward, backward = p["bioS_multi5_permutes"], p[REVERSED_V]
        assert len(backward) == 5
        for f, b in zip(forward, backward):  # the same five biographies, each reversed
            assert b.endswith(p["name"]) and all(e in b for e in entities)
            assert re.sub(r"\s", "", entity_reversed(b, entities)) == re.sub(r"\s", "", f)  # twice: the original


def test_reverse_qa_training_text_is_exactly_the_train_peoples_reverse_questions(remedies):
    rows = read_jsonl(remedies / "qa" / "reverse.jsonl")
    train = sorted(qa_text(r["question"], r["answer"]) for r in rows if r["split"] == "train")
    texts = [r["text"] for r in read_jsonl(remedies / "train" / "qa_reverse_train.jsonl")]
    assert sorted(texts) == train and len(train) > 0
    heldout = {r["answer"] for r in rows if r["split"] == "heldout"}
    assert not any(name in t for t in texts for name in heldout)  # heldout people's reverse QA never trains


REDUCED = (
    "--people",
    "60",
    "--multi5-epochs",
    "12",
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
)


@pytest.mark.slow
def test_reversal_study_shows_that_value_first_text_beats_reverse_qa(tmp_path):
    """`make reversal` at a reduced size (60 people, a 2-layer model, two arms): reverse QA of
    train people teaches those people only (heldout people stay at chance, as without it);
    value-first biographies make heldout people's reverse questions answerable; forward
    memorization survives; the untrained model is at chance. Measured here: reverse on heldout
    0.167 / 0.500, on train 0.867 / 0.967; trained QA 0.933 / 0.989."""
    import subprocess
    import sys

    from helpers.common import cli_env

    arms = "reverse_qa,reverse_qa+value_first"
    cmd = [sys.executable, "-m", "engram_run", "reversal", *REDUCED, "--arms", arms]
    proc = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    out = tmp_path / "results" / "reversal"
    rows = json.loads((out / "reversal.json").read_text())
    assert list(rows) == ["untrained", *arms.split(",")]
    sc = {arm: r["scores"] for arm, r in rows.items()}
    assert rows["untrained"]["questions"]["reverse_heldout"] == 30
    assert abs(sc["untrained"]["reverse_heldout"] - 0.25) <= 0.15 and sc["untrained"]["reverse_gen_heldout"] == 0
    assert sc["reverse_qa"]["reverse_heldout"] <= 0.45  # the curse holds for them: chance on 30 questions (+-0.08)
    assert sc["reverse_qa"]["reverse_train"] - sc["reverse_qa"]["reverse_heldout"] >= 0.2  # only whom it trained
    # Measured at this size: 0.500 vs 0.167 (30 questions each, stderr ~0.09); the default: 0.84 vs 0.30.
    assert sc["reverse_qa+value_first"]["reverse_heldout"] >= 0.4
    assert sc["reverse_qa+value_first"]["reverse_heldout"] - sc["reverse_qa"]["reverse_heldout"] >= 0.15
    for arm in arms.split(","):
        assert sc[arm]["trained_qa"] >= 0.85, sc  # forward memorization survives every remedy (0.933, 0.989)
    assert rows["reverse_qa+value_first"]["extra"] == ["qa_reverse_train", "bioS_multi5_permutes_value_first"]
    assert "| `reverse_qa+value_first` |" in (out / "reversal.md").read_text()
    assert (out / "reversal.png").stat().st_size > 10_000
