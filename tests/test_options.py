"""Leak-free options and chance-level floors: a guesser that only counts how often each
option occurs in the training text, and an untrained model of every architecture, must
score a quarter; the option design behind it is checked exactly."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter

import numpy as np
import pytest
from helpers.common import run_generate
from helpers.guesser import frequency_guesser

from engram_data.contract import FIELDS, read_jsonl
from engram_data.options import (
    PROTOCOL,
    OptionSampler,
    fit_weights,
    inclusion_probabilities,
    make_choices,
)

QA_FILES = [*FIELDS, "reverse"]


# --------------------------------------------------------------------------- the design


def test_inclusion_probabilities_equal_brute_force_enumeration():
    w = np.array([0.3, 1.2, 0.5, 2.0, 0.7, 0.9, 0.05])
    expected, total = np.zeros(len(w)), 0.0
    for subset in itertools.combinations(range(len(w)), 4):
        weight = np.prod(w[list(subset)])
        total += weight
        expected[list(subset)] += weight
    assert np.allclose(inclusion_probabilities(w), expected / total, rtol=0, atol=1e-15)


def test_fitted_weights_put_each_value_in_a_set_four_times_its_share():
    counts = [8, 3, 1, 1, 2, 5, 7, 1, 1, 1, 4, 6, 2]
    w, exact = fit_weights(counts)
    assert exact
    assert np.abs(inclusion_probabilities(w) - 4 * np.array(counts) / sum(counts)).max() < 1e-11


def test_a_value_held_by_over_a_quarter_cannot_be_exact():
    assert OptionSampler(list("aaaaaabcde")).exact is False
    assert OptionSampler(list("abcd")).exact is True  # every set is all four values, equally held
    assert OptionSampler(list("aabcd")).exact is False
    with pytest.raises(ValueError, match="3 distinct values cannot make 4 distinct options"):
        OptionSampler(list("abc"))
    assert OptionSampler(list("abc"), spare=["x", "y"]).values == ["a", "b", "c", "x"]


def test_the_answer_is_an_option_exactly_as_often_as_a_distractor_is():
    """P(answer | option set) = 1/4 for every set: a guesser that always picks the most
    frequent value wins a quarter of the time, although frequencies differ 8 to 1."""
    counts = dict(zip("abcdefghijklm", [8, 3, 1, 1, 2, 5, 7, 1, 1, 1, 4, 6, 2]))
    answers = [v for v, c in counts.items() for _ in range(c)]
    sampler, rng = OptionSampler(answers), random.Random(0)
    wins, total = 0.0, 0
    for _ in range(2000):
        for answer in answers:
            choices, label = make_choices(answer, sampler, rng)
            assert len(set(choices)) == 4 and choices[label] == answer
            top = max(counts[c] for c in choices)
            winners = [c for c in choices if counts[c] == top]
            wins += (answer in winners) / len(winners)
            total += 1
    assert wins / total == pytest.approx(0.25, abs=0.003)  # 84,000 questions: sd 0.0015


# --------------------------------------------------------------------------- the data


@pytest.fixture(scope="module")
def population_5k(tmp_path_factory):
    out = tmp_path_factory.mktemp("p5k") / "bios"
    proc = run_generate("--num-people", "5000", "--seed", "0", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def assert_at_chance(scores: dict, tolerance: float, splits=("train", "heldout")):
    assert sorted(scores) == sorted(QA_FILES)
    for name, by_split in scores.items():
        assert sorted(by_split) == sorted(splits), name
        for split, acc in by_split.items():
            assert abs(acc - 0.25) <= tolerance, (name, split, acc)


def test_a_frequency_only_guesser_is_at_chance_on_every_field_and_split(population_5k):
    assert_at_chance(frequency_guesser(population_5k), 0.03)


def test_a_frequency_only_guesser_is_at_chance_on_the_demos_data(tmp_path):
    # The demo's population: 200 people, seed 0 (100 questions per field and split,
    # so sampling noise alone is about 0.04).
    out = tmp_path / "demo"
    assert run_generate("--num-people", "200", "--seed", "0", "--out", str(out)).returncode == 0
    assert_at_chance(frequency_guesser(out), 0.06)


def test_distractors_are_values_of_other_people_of_the_same_split(population_5k):
    people = read_jsonl(population_5k / "people.jsonl")
    held: dict[tuple[str, str], Counter] = {}
    for p in people:
        for f in (*FIELDS, "name"):
            held.setdefault((p["split"], f), Counter())[p[f]] += 1
    for name in QA_FILES:
        for row in read_jsonl(population_5k / "qa" / f"{name}.jsonl"):
            values = held[(row["split"], row["field"])]
            assert all(c in values for c in row["choices"]), row
            assert len(set(row["choices"])) == 4 and row["choices"][row["label"]] == row["answer"]
    manifest = json.loads((population_5k / "manifest.json").read_text())
    assert manifest["generator_version"] == "2.6" and manifest["options"] == PROTOCOL
    for name in QA_FILES:
        assert manifest["files"][f"qa/{name}.jsonl"]["options_exact"] == {"heldout": True, "train": True}


def test_an_imported_dataset_follows_the_same_protocol(population_5k, tmp_path):
    # bioS_v1's schema: attributes only as *_a answers, texts given; splits and options are ours.
    source = tmp_path / "bios_v1.jsonl"
    keep = ("name", "bioS", "bioS_fullname", "bioS_multi5_permutes")
    rows = [
        {k: v for k, v in p.items() if k in keep or k.endswith(("_q", "_a"))}
        for p in read_jsonl(population_5k / "people.jsonl")
    ]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "imported"
    proc = run_generate("--source", str(source), "--seed", "3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert_at_chance(frequency_guesser(out), 0.03)


# --------------------------------------------------------------------------- untrained models


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["llama", "gpt2", "gptj", "gpt_neox", "olmo2"])
def test_an_untrained_model_of_every_architecture_scores_chance(arch, tiny_models, bios_dir):
    """The tiny models' tokenizer sees every option value equally often, so a random model's
    taste for short options tells it nothing: chance on 1,800 questions per set."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engram_eval.recall import RecallEvaluator

    tok = AutoTokenizer.from_pretrained(tiny_models[arch])
    model = AutoModelForCausalLM.from_pretrained(tiny_models[arch], dtype=torch.float32)
    results = RecallEvaluator(bios_dir, tok, sets=["train", "heldout"], batch_size=64).evaluate(model)
    for qset in ("train", "heldout"):
        assert results[qset]["num_questions"] >= 600
        assert abs(results[qset]["overall"] - 0.25) <= 0.03, (qset, results[qset])
        assert abs(results[qset]["overall_norm"] - 0.25) <= 0.03, (qset, results[qset])
