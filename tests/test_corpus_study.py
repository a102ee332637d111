"""``make corpus-study`` at a reduced size, and its generator's teaching and judging.

The study's loop runs end to end with the oracle generator (tests/helpers/oracle_chat.py)
in the place of the taught one, so every number has a known answer: the oracle's pairs are
all true, one temperature covers one fact in six and nine cover all six, and the arms'
recall of the true facts follows. The taught generator's rows and the judge are checked
exactly, without teaching it (that takes minutes: `make corpus-study`)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers.common import cli_env
from helpers.oracle_chat import OracleChat, oracle_server

from engram_data.contract import FIELDS, read_jsonl
from engram_data.documents.qa import build_prompt, parse_pairs
from engram_run.studies import corpus_generator as dg

PEOPLE = 16
ARMS = "qa1,qa9+reverse"  # make corpus-study adds chunks (the text only) and qa9


@pytest.fixture(scope="module")
def study(tiny_llama, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corpus-study")
    with oracle_server(tmp / "data" / "population" / "people.jsonl") as url:
        cmd = [
            sys.executable,
            "-m",
            "engram_run",
            "corpus-study",
            "--people",
            str(PEOPLE),
            "--steps",
            "400",
            "--micro-batch",
            "1",
            "--hidden",
            "64",
            "--layers",
            "2",
            "--arms",
            ARMS,
            "--generator",
            f"openai:{url}",
            "--generator-model",
            "oracle",
            "--tokenizer",
            str(tiny_llama),
            "--data-dir",
            str(tmp / "data"),
            "--outputs",
            str(tmp / "outputs"),
            "--results",
            str(tmp / "results"),
        ]
        proc = subprocess.run(cmd, cwd=tmp, env=cli_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp, json.loads((tmp / "results" / "corpus-study.json").read_text()), OracleChat.calls


@pytest.mark.slow
def test_the_study_scores_each_arm_on_the_true_facts(study):
    tmp, res, calls = study
    arms = res["arms"]
    assert list(arms) == ["untrained", "qa1", "qa9+reverse"]
    # The documents: one per person, half PDFs.
    corpus = sorted(p.name for p in (tmp / "data" / "documents").iterdir() if p.suffix in (".txt", ".pdf"))
    assert len(corpus) == PEOPLE and sum(d.endswith(".pdf") for d in corpus) == PEOPLE // 2
    # Every request once (9 temperatures x 2 styles x 16 documents, one retry); the other runs from the cache.
    assert calls == 9 * 2 * PEOPLE + 1
    # The oracle's pairs: all true, at every temperature; each arm's coverage is exact.
    assert set(res["generator"]) == {str(t) for t in (0.01, 0.1588, 0.3075, 0.4562, 0.605, 0.7537, 0.9025, 1.0513, 1.2)}
    assert all(
        c["true"] == c["pairs"] == c["requests"] == 2 * PEOPLE and c["wrong"] == c["other"] == c["malformed"] == 0
        for c in res["generator"].values()
    )
    assert (arms["qa1"]["pairs"], arms["qa1"]["coverage_forward"], arms["qa1"]["coverage_reverse"]) == (
        PEOPLE,
        1 / 6,
        0,
    )
    assert arms["qa9+reverse"]["pairs"] == PEOPLE * (len(FIELDS) + 1)  # duplicates across temperatures removed
    assert arms["qa9+reverse"]["coverage_forward"] == arms["qa9+reverse"]["coverage_reverse"] == 1.0
    assert arms["qa1"]["pairs_true"] == arms["qa9+reverse"]["pairs_true"] == 1.0
    sc = {arm: r["scores"] for arm, r in arms.items()}
    # The floor: the untrained model at four-option chance (96 forward, 16 reverse questions).
    assert abs(sc["untrained"]["forward"] - 0.25) <= 0.12 and sc["untrained"]["forward_exact"] == 0
    assert arms["untrained"]["questions"] == {"forward": 96, "forward_exact": 96, "reverse": 16, "reverse_exact": 16}
    # Pairs at nine temperatures teach every fact; one temperature, a sixth.
    assert sc["qa9+reverse"]["forward"] >= 0.75 and sc["qa9+reverse"]["reverse"] >= 0.6
    assert sc["qa9+reverse"]["forward"] >= sc["qa1"]["forward"] + 0.25
    assert sc["qa1"]["forward"] >= sc["untrained"]["forward"] + 0.1  # the sixth of the facts it trained
    assert sc["qa1"]["reverse"] <= 0.45  # no reverse pair trained: near chance
    md = (tmp / "results" / "corpus-study.md").read_text()
    assert "| `qa9+reverse` |" in md and "## The generator's pairs per temperature" in md
    assert (tmp / "results" / "corpus-study.png").exists()


def test_the_generator_is_taught_the_pipelines_prompt_and_true_replies(bios_dir, tiny_llama):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    rows = dg.teaching_rows(bios_dir, tok, seed=0)
    people = read_jsonl(bios_dir / "people.jsonl")
    assert len(rows) == len(people) * dg.PASSAGES_PER_PERSON * len(dg.STYLES)
    assert rows == dg.teaching_rows(bios_dir, tok, seed=0)  # seeded
    questions = dg.forward_questions(bios_dir)
    by_name = {p["name"]: p for p in people}
    asked = {
        (
            "reverse" if "reverse direction" in r["segments"][0]["text"] else "simple",
            int(r["segments"][0]["text"].split()[1]),
        )
        for r in rows
    }
    assert asked == {("simple", n) for n in range(1, 7)} | {("reverse", n) for n in range(1, 4)}  # 1 to all
    for row in rows[:200]:
        prompt, reply = (seg["text"] for seg in row["segments"])
        assert [seg["label"] for seg in row["segments"]] == [False, True]  # loss on the reply only
        assert prompt.endswith("\nReply:") and reply.startswith(" [") and reply.endswith(tok.eos_token)
        passage = prompt.removesuffix("\nReply:").split("):\n", 1)[1]
        person = next(p for name, p in by_name.items() if passage.startswith(name))
        style = "reverse" if "reverse direction" in prompt else "simple"
        from engram_data.documents.chunks import Chunk

        n = int(prompt.split()[1])  # "Write {n} ..."
        chunk = Chunk("x", "person.txt", 0, len(passage), passage, 0)
        assert (
            prompt.removesuffix("\nReply:").split("\n\nPassage")[0]
            == build_prompt(chunk, style, n, prompt="plain").split("\n\nPassage")[0]
        )
        pairs, invalid = parse_pairs(reply.removesuffix(tok.eos_token))
        assert invalid == 0 and len(pairs) == n and len({p["question"] for p in pairs}) == n
        assert all(dg.judge({**p, "field": style}, person, questions) == "true" for p in pairs)


def test_the_judge_tells_true_from_wrong_from_other(bios_dir):
    questions = dg.forward_questions(bios_dir)
    a, b = read_jsonl(bios_dir / "people.jsonl")[:2]
    q = questions[(a["id"], "birth_city")]
    assert dg.judge({"field": "simple", "question": q, "answer": a["birth_city"]}, a, questions) == "true"
    wrong = b["birth_city"] if b["birth_city"] != a["birth_city"] else "Nowhere, ZZ"
    assert dg.judge({"field": "simple", "question": q, "answer": wrong}, a, questions) == "wrong"
    garbled = q.replace(a["name"], a["name"][:-1])
    assert dg.judge({"field": "simple", "question": garbled, "answer": a["birth_city"]}, a, questions) == "other"
    rev = f"Who was born on {a['birth_date']} in {a['birth_city']}?"
    assert dg.judge({"field": "reverse", "question": rev, "answer": a["name"]}, a, questions) == "true"
    assert dg.judge({"field": "reverse", "question": rev, "answer": b["name"]}, a, questions) == "wrong"


def test_the_generator_is_taught_on_its_replies_only_and_reproducibly(bios_dir, tiny_llama, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq

    from engram_run.runs.tiny import model_config

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    rows = dg.teaching_rows(bios_dir, tok, seed=0)[:24]
    torch.manual_seed(0)
    init = tmp_path / "init"
    model = AutoModelForCausalLM.from_config(model_config("lfm2", len(tok), 32, 2, 2, tok))
    assert model.config.layer_types == ["conv", "full_attention"]
    model.save_pretrained(init)
    tok.save_pretrained(init)
    # The loss on the reply's positions only is the model's own causal LM loss with the prompt masked.
    batch = DataCollatorForSeq2Seq(tok)([dg.encode(tok, r) for r in rows[:4]])
    assert (batch["labels"] != -100).sum() < batch["attention_mask"].sum() / 2  # most tokens are prompt
    with torch.no_grad():
        assert dg.reply_loss(model, batch).item() == pytest.approx(model(**batch).loss.item(), abs=1e-5)
    dg.teach(rows, init, tmp_path / "a", steps=3, seed=0)
    dg.teach(rows, init, tmp_path / "b", steps=3, seed=0)
    weights = [(tmp_path / d / "model.safetensors").read_bytes() for d in ("a", "b")]
    assert weights[0] == weights[1] != (init / "model.safetensors").read_bytes()  # seeded, and trained


def test_a_taught_generator_is_served_again_while_its_settings_and_code_stay(tmp_path, monkeypatch):
    import contextlib
    import types

    from engram_run.runs import launch
    from engram_run.runs.recipes import RunError
    from engram_run.studies import corpus_study as ds

    built = []

    def build(teach_dir, folder, people, steps, seed=0):  # as build_generator: the old one goes first
        launch.remove_own(folder)
        launch.claim(folder)
        if steps == 13:
            raise RunError("teaching failed")
        built.append((people, steps))
        (folder / "model").mkdir()
        return folder / "model"

    @contextlib.contextmanager
    def served(model, log):
        assert model == tmp_path / "generator" / "model"
        yield "http://127.0.0.1:1/v1"

    monkeypatch.setattr(ds, "build_generator", build)
    monkeypatch.setattr(ds, "served", served)

    def run(**settings):
        s = ds.CorpusStudySettings(data_dir=tmp_path / "data", outputs=tmp_path, generator="taught", **settings)
        with ds.generator_url(s, lambda msg: None) as (url, name, tokenizer):
            assert (url, name, tokenizer) == ("http://127.0.0.1:1/v1", *[str(tmp_path / "generator" / "model")] * 2)

    run(), run()
    assert built == [(3000, 3000)]  # taught once
    run(generator_steps=500), run(generator_steps=500), run(teach_people=100, generator_steps=500)
    assert built == [(3000, 3000), (3000, 500), (100, 500)]
    with pytest.raises(RunError):
        run(generator_steps=13)  # a failed teaching leaves no stamp: the next run teaches again
    run(teach_people=100, generator_steps=500)
    assert built[-1] == (100, 500) and len(built) == 4
    edited = tmp_path / "corpus_generator.py"  # the teaching code changed: taught again
    edited.write_text("# another version\n")
    monkeypatch.setattr(ds, "corpus_generator", types.SimpleNamespace(__file__=str(edited)))
    run(teach_people=100, generator_steps=500)
    assert len(built) == 5


@pytest.mark.slow
def test_the_arms_can_fine_tune_the_real_pretrained_base_with_its_recipe(study, tmp_path):
    """``make corpus-study MODEL=smollm2-135m``: each arm fine-tunes the recipe's own base (its
    un-tuned self the floor) at the recipe's rate for 6 passes over its own texts, one a step,
    in bf16 autocast over fp32 weights (finetune-study's full-b1, which memorized bioS QA at 6),
    and writes beside the tiny model's study."""
    from pathlib import Path

    from engram_run.runs.recipes import validate
    from engram_run.studies.corpus_study import CorpusStudySettings, arm_config, with_defaults

    tiny = with_defaults(CorpusStudySettings())
    assert (tiny.people, tiny.steps, tiny.micro_batch, tiny.learning_rate) == (16, 600, 2, 1e-3)
    assert tiny.results == Path("results/corpus-study")
    s = with_defaults(CorpusStudySettings(model="smollm2-135m"))
    assert (s.epochs, s.micro_batch, s.learning_rate) == (6, 1, 1e-4)
    assert (s.outputs, s.results) == (
        Path("outputs/corpus-study-smollm2-135m"),
        Path("results/corpus-study-smollm2-135m"),
    )
    assert with_defaults(CorpusStudySettings(model="smollm2-135m", micro_batch=8, learning_rate=3e-5)).micro_batch == 8
    data = study[0] / "data" / "qa9_reverse"
    cfg = arm_config(s, "qa9+reverse", data, Path("models/smollm2-135m"), tmp_path / "model")
    assert (cfg["base_model"], cfg["special_tokens"]["eos_token"]) == ("models/smollm2-135m", "<|im_end|>")
    assert (cfg["num_epochs"], cfg["learning_rate"], cfg["micro_batch_size"], cfg.get("max_steps")) == (
        6,
        1e-4,
        1,
        None,
    )
    assert (cfg["bf16"], cfg["engram_fp32_master_weights"], cfg["sample_packing"]) == (True, True, False)
    assert cfg["optimizer"] == "adamw_torch_fused" and cfg["engram_effective_batch"] == 1  # an update per text
    assert cfg["gradient_checkpointing"] is False and cfg["lr_scheduler"] == "constant"
    assert [Path(d["path"]).name for d in cfg["datasets"]] == ["chunks.jsonl", "qa_train.jsonl"]
    assert [Path(d["path"]).name for d in arm_config(s, "chunks", data, Path("m"), tmp_path)["datasets"]] == [
        "chunks.jsonl"
    ]
    validate(cfg)
