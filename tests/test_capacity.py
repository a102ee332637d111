"""Knowledge capacity (Physics of LM 3.3): an oracle stores exactly the maximum, a uniform
model nothing, an untrained tiny model under 2%, a trained one more than untrained; the CLI
and the CPU study write what they say."""

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
from helpers.memorize import memorize

from engram_data.contract import FIELDS as FIELDS_ALL
from engram_eval import capacity_qa as capacity
from engram_eval import cli as capacity_cli
from engram_eval.capacity_qa import COUNTED, CapacityEvaluator, bits_from_scores

PEOPLE = 8


def test_bits_of_an_oracle_a_uniform_and_a_wrong_scorer():
    labels = torch.tensor([2, 0])
    oracle = torch.full((2, 4), -1e30).scatter(1, labels.view(-1, 1), 0.0)
    assert bits_from_scores(oracle, labels).tolist() == [2.0, 2.0]  # log2(4): every bit of the choice
    assert bits_from_scores(torch.zeros(2, 4), labels).tolist() == [0.0, 0.0]  # uniform: no knowledge
    wrong = torch.tensor([[0.0, 0.0, math.log(1 / 3), 0.0]])  # the answer a third as likely as each other
    assert bits_from_scores(wrong, torch.tensor([2])).item() == pytest.approx(2 + math.log2(0.1))


@pytest.fixture(scope="module")
def evaluator(bios_dir, tiny_llama) -> CapacityEvaluator:
    from transformers import AutoTokenizer

    return CapacityEvaluator(bios_dir, AutoTokenizer.from_pretrained(tiny_llama), "train", PEOPLE, batch_size=8)


def scripted(kind: str):
    """score_batch as an oracle (all mass on the right value) or a uniform model would give it."""

    def score(model, questions, pad_id=0, device=None):
        scores = torch.zeros(len(questions), len(questions[0].options), dtype=torch.float64)
        if kind == "oracle":
            scores.fill_(-1e30)
            scores[torch.arange(len(questions)), torch.tensor([q.label for q in questions])] = 0.0
        return scores

    return score


def test_an_oracle_stores_exactly_the_maximum_and_a_uniform_model_nothing(evaluator, tiny_llama, monkeypatch):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    monkeypatch.setattr(capacity, "score_batch", scripted("oracle"))
    oracle = evaluator.evaluate(model)
    assert oracle["bits"] == pytest.approx(oracle["max_bits"], rel=1e-12) and oracle["share"] == pytest.approx(1.0)
    fields = oracle["fields"]
    assert fields["birth_date"]["method"] == "chain" and len(fields["birth_date"]["pool"]) == 3
    assert fields["major"]["pool"] == [len(evaluator.pools["major", 0])]
    for f in fields.values():
        assert f["people"] == PEOPLE and f["bits"] == pytest.approx(f["max_bits"], rel=1e-12)
        assert f["max_bits"] == pytest.approx(PEOPLE * sum(math.log2(n) for n in f["pool"]))
    assert oracle["max_bits"] == pytest.approx(sum(fields[f]["max_bits"] for f in COUNTED))
    assert oracle["bits_per_param"] == oracle["bits"] / sum(p.numel() for p in model.parameters())
    monkeypatch.setattr(capacity, "score_batch", scripted("uniform"))
    uniform = evaluator.evaluate(model)
    assert uniform["bits"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.slow
def test_an_untrained_model_stores_under_2_percent_and_a_trained_one_more(tiny_llama, bios_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    attributes = CapacityEvaluator(bios_dir, tok, "train", PEOPLE, batch_size=8, names=False)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    untrained = attributes.evaluate(model)
    assert untrained["share"] < 0.02, untrained["share"]
    memorize(model, tok, bios_dir, PEOPLE, steps=120)
    trained = attributes.evaluate(model)
    assert trained["bits"] > untrained["bits"] + 0.1 * trained["max_bits"], (trained["bits"], untrained["bits"])


@pytest.mark.slow
def test_the_cli_writes_json_and_markdown(bios_dir, tiny_llama, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "engram_eval.cli",
        "--model",
        str(tiny_llama),
        "--data",
        str(bios_dir),
        "--limit",
        "3",
        "--out",
        str(tmp_path / "cap"),
        "--measure",
        "qa",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "cap" / "capacity.json").read_text())
    assert result["people"] == 3 and "name" in result["fields"] and not result["fields"]["name"]["in_total"]
    assert "| birth_date | chain |" in (tmp_path / "cap" / "capacity.md").read_text()
    bad = subprocess.run([*cmd[:6], str(tmp_path / "nodata")], capture_output=True, text=True, env=cli_env())
    assert bad.returncode == 2 and bad.stderr.startswith("engram-capacity: error:") and "Traceback" not in bad.stderr
    # The default measure is Physics of LM 3.3's bound (in this process: the same code path).
    assert capacity_cli.main([*cmd[3:9], "--out", str(tmp_path / "bound")]) == 0
    bound = json.loads((tmp_path / "bound" / "capacity.json").read_text())
    assert bound["measure"] == "Physics of LM 3.3 bit-complexity lower bound" and bound["people"] == 3
    assert "| attributes: N log2(S0 / e^p2) |" in (tmp_path / "bound" / "capacity.md").read_text()


@pytest.mark.slow
def test_the_cpu_study_at_a_reduced_size(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "engram_run",
        "capacity",
        "--people",
        "12",
        "--hidden",
        "16,32",
        "--epochs",
        "1",
        "--vocab-size",
        "512",
        "--data-dir",
        "data",
        "--outputs",
        "outputs",
        "--results",
        "results",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    runs = json.loads((tmp_path / "results/capacity.json").read_text())["runs"]
    assert [(r["people"], r["hidden"]) for r in runs] == [(12, 16), (12, 32)]
    assert runs[0]["params"] < runs[1]["params"] and all(r["untrained_bits"] < 0.02 * r["max_bits"] for r in runs)
    assert all(r["untrained_bits"] == 0.0 and "qa_bits" in r for r in runs)  # the bound floors a random model at 0
    assert all(r["exposures"] == 5 and r["data_bits_per_param"] == r["max_bits"] / r["params"] for r in runs)
    # One epoch: the losses stay above what the pools alone give, where the bound counts nothing.
    assert all(
        r["value_loss_nats"] > r["value_zero_nats"] == pytest.approx(math.log(12 * 28 * 200 * 200 * 300 * 100 * 250))
        and r["bits"] == 0.0
        for r in runs
    )
    assert runs[0]["qa_max_bits"] == runs[1]["qa_max_bits"] > 0  # the QA measure's first --qa-people people
    # The biographies alone are trained (the bound reads them), not the QA.
    config = yaml.safe_load((tmp_path / "outputs/people12-hidden16/config.yml").read_text())
    assert [Path(d["path"]).name for d in config["datasets"]] == ["bioS_multi5_permutes.jsonl"]
    md = (tmp_path / "results/capacity.md").read_text()
    assert "5 exposures of each fact" in md and "none at this exposure count" in md
    assert (tmp_path / "results/capacity.png").read_bytes()[:4] == b"\x89PNG"


# -- Physics of LM 3.3's bound, from the losses inside the biographies


@pytest.fixture(scope="module")
def bound(bios_dir, tiny_llama):
    from transformers import AutoTokenizer

    from engram_eval.capacity_bound import BoundEvaluator

    return BoundEvaluator(bios_dir, AutoTokenizer.from_pretrained(tiny_llama), limit=PEOPLE)


def test_the_bound_scores_exactly_the_name_and_value_tokens_of_each_biography(bound):
    tok = bound.tokenizer
    for person, (ids, name, values) in zip(bound.people, bound.items):
        assert tok.decode([ids[i] for i in name]).strip() == person["name"]
        text = tok.decode([ids[i] for i in values])
        for field in FIELDS_ALL:
            assert person[field] in text or person[field].replace(" ", "") in text.replace(" ", ""), (field, text)
        # only those: no token of the template's own words between the values
        assert len(values) <= sum(len(tok(" " + person[f], add_special_tokens=False)["input_ids"]) for f in FIELDS_ALL)


def test_the_bound_of_a_knowing_scorer_is_the_datas_bits_and_of_a_uniform_one_zero(bound, tiny_llama, monkeypatch):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    # by-name gender: N0 = 2 genders x 200 x 200 x 1000 names; S0 = dates x cities x universities x majors x employers
    assert (bound.pools["N0"], bound.pools["S0"]) == (2 * 200 * 200 * 1000, 12 * 28 * 200 * 200 * 300 * 100 * 250)
    knows = [torch.zeros(len(ids), dtype=torch.float64) for ids, _, _ in bound.items]
    full = bound.summarize(knows, model)
    expected = PEOPLE * (math.log2(bound.pools["N0"] - PEOPLE) + math.log2(bound.pools["S0"]))
    assert full["bits"] == pytest.approx(expected, rel=1e-12) and full["share"] == pytest.approx(1.0)
    uniform = [torch.full((len(ids),), math.log(len(bound.tokenizer))) for ids, _, _ in bound.items]
    assert bound.summarize(uniform, model)["bits"] == 0.0
    untrained = bound.evaluate(model)  # a random model is a near-uniform guesser: nothing stored
    assert untrained["bits"] == 0.0 and untrained["value_loss_nats"] > math.log(bound.pools["S0"])


def test_the_bound_counts_parameters_with_the_vocabulary_the_data_uses(bound, tiny_llama, bios_dir):
    """As Physics of LM 3.3 counts them: embedding (and head) rows of tokens the data never
    uses are left out; the tiny Llama ties its head to its embeddings, so they count once."""
    from transformers import AutoModelForCausalLM

    from engram_data.contract import read_jsonl
    from engram_eval.params import used_vocabulary_params

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    used = {t for p in read_jsonl(bios_dir / "people.jsonl") for t in bound.tokenizer(p["bioS"])["input_ids"]}
    assert bound.used_tokens == len(used) < model.config.vocab_size
    result = bound.evaluate(model)
    rows, width = model.get_input_embeddings().weight.shape
    assert result["params_used_vocabulary"] == result["params"] - (rows - len(used)) * width
    assert used_vocabulary_params(model, rows) == result["params"]  # every row used: every parameter


@pytest.mark.slow
def test_a_model_trained_on_the_biographies_stores_bits_by_the_bound(bound, tiny_llama, bios_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    memorize(model, bound.tokenizer, bios_dir, PEOPLE, steps=150, texts=[p["bioS"] for p in bound.people])
    trained = bound.evaluate(model)
    # 8 biographies learnt by heart: most of their attribute bits, and the names too.
    assert trained["value_bits"] > 0.5 * PEOPLE * math.log2(bound.pools["S0"]), trained
    assert trained["name_bits"] > 0 and trained["bits_per_param"] == trained["bits"] / trained["params"]
