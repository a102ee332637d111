"""lm_eval_tasks: exact scores from models whose log-likelihoods are known by construction,
real runs of every task through the hf backend, and the data-dir errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.common import REPO, cli_env
from lm_eval import simple_evaluate
from lm_eval.api.model import LM
from lm_eval.utils import load_yaml_config

from engram_data.contract import FIELDS, read_jsonl
from lm_eval_tasks import TASKS_DIR
from lm_eval_tasks.utils import BiosDataError, load_bios_qa, normalize_answer, process_gen

GROUPS = {
    "bios_qa": ("bios_qa", "train"),
    "bios_qa_heldout": ("bios_qa_heldout", "heldout"),
    "bios_qa_letters": ("bios_qa_letters", "train"),
    "bios_qa_letters_5shot": ("bios_qa_letters_5shot", "train"),
    "bios_qa_engram": ("bios_qa_engram", "train"),
}
REVERSE_TASKS = {"bios_qa_reverse": "all", "bios_qa_reverse_train": "train", "bios_qa_reverse_heldout": "heldout"}
REVERSE_GEN = {"bios_qa_reverse_gen": "train", "bios_qa_reverse_gen_heldout": "heldout"}
MC_TASKS = [*GROUPS, *REVERSE_TASKS]
GEN_TASKS = {"bios_qa_gen": "train", "bios_qa_gen_heldout": "heldout"}
ALL_TASKS = [*MC_TASKS, *GEN_TASKS, *REVERSE_GEN]


def qa_rows(bios_dir: Path, name: str, people: str) -> list[dict]:
    rows = read_jsonl(bios_dir / "qa" / f"{name}.jsonl")
    return rows if people == "all" else [r for r in rows if r["split"] == people]


class ScriptedLM(LM):
    """Scores an option 0.0 if ``favoured(row)`` names it, else -10: log-likelihoods known
    by construction. The question is read back from the prompt, so few-shot works too."""

    def __init__(self, bios_dir: Path, favoured):
        super().__init__()
        self.rows = {r["question"]: r for f in (*FIELDS, "reverse") for r in read_jsonl(bios_dir / "qa" / f"{f}.jsonl")}
        self.favoured = favoured

    def row(self, context: str) -> dict:
        if "\nExample 4:\n" in context:  # llm_engram's prompt: the question follows "Example 4:"
            return self.rows[context.rsplit("\nExample 4:\n", 1)[1].split("\n", 1)[0]]
        return self.rows[re.findall(r"Question: (.*)\n", context)[-1]]

    def loglikelihood(self, requests):
        out = []
        for req in requests:
            context, continuation = req.args
            row, index = self.row(context), None
            index = self.favoured(self.row(context))
            last = context.rsplit("Question: ", 1)[-1].rsplit("Example 4:", 1)[-1]
            label = "ABCD"[index] if "\nA. " in last else "1234"[index] if "\n1. " in last else None
            best = " " + (label or row["choices"][index])
            out.append((0.0, True) if continuation == best else (-10.0, False))
        return out

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError

    def generate_until(self, requests):
        return [" " + self.row(req.args[0])["answer"] + "." for req in requests]


def evaluate(task_manager, lm, tasks):
    return simple_evaluate(model=lm, tasks=tasks, task_manager=task_manager)["results"]


def test_oracle_scores_exactly_one_on_every_task(bios_dir, task_manager):
    out = simple_evaluate(model=ScriptedLM(bios_dir, lambda r: r["label"]), tasks=ALL_TASKS, task_manager=task_manager)
    results = out["results"]
    for task in MC_TASKS:
        assert results[task]["acc,none"] == 1.0, task
        if "letters" not in task and "engram" not in task:
            assert results[task]["acc_norm,none"] == 1.0, task
    for field in FIELDS:
        for prefix in GROUPS:
            assert results[f"{prefix}_{field}"]["acc,none"] == 1.0
        for prefix, people in GEN_TASKS.items():  # every question of its people
            assert results[f"{prefix}_{field}"]["exact_match,none"] == 1.0
            assert out["n-samples"][f"{prefix}_{field}"]["effective"] == len(qa_rows(bios_dir, field, people))
    for task in GEN_TASKS:
        assert results[task]["exact_match,none"] == 1.0
    for task, people in {**REVERSE_TASKS, **REVERSE_GEN}.items():  # each split's reverse questions, all of them
        assert out["n-samples"][task]["effective"] == len(qa_rows(bios_dir, "reverse", people)) > 0, task
    for task in REVERSE_GEN:
        assert results[task]["exact_match,none"] == 1.0


def test_first_option_model_scores_the_fraction_of_labels_equal_to_zero(bios_dir, task_manager):
    results = evaluate(task_manager, ScriptedLM(bios_dir, lambda r: 0), MC_TASKS)
    for group, (prefix, people) in GROUPS.items():
        total = zero = 0
        for field in FIELDS:
            rows = qa_rows(bios_dir, field, people)
            expected = sum(r["label"] == 0 for r in rows) / len(rows)
            assert results[f"{prefix}_{field}"]["acc,none"] == pytest.approx(expected, abs=1e-12)
            total, zero = total + len(rows), zero + sum(r["label"] == 0 for r in rows)
        # The group row is the size-weighted mean ("overall").
        assert results[group]["acc,none"] == pytest.approx(zero / total, abs=1e-12)
        assert 0.15 < zero / total < 0.35  # labels are spread: this is not the oracle again
    for task, people in REVERSE_TASKS.items():
        rows = qa_rows(bios_dir, "reverse", people)
        assert results[task]["acc,none"] == pytest.approx(sum(r["label"] == 0 for r in rows) / len(rows)), task


def test_fewshot_exemplars_are_strangers(bios_dir):
    names = {p["name"] for p in read_jsonl(bios_dir / "people.jsonl")}
    for field in FIELDS:
        shots = load_bios_qa(field, data_dir=str(bios_dir), fewshot=True)["fewshot"]
        assert len(shots) == 10
        for row in shots:
            assert not any(n in row["question"] for n in names)
            assert row["choices"][row["label"]] == row["answer"] and len(set(row["choices"])) == 4


@pytest.mark.parametrize(
    ("response", "answer", "score"),
    [
        (" May 26, 1939", "May 26, 1939", 1.0),
        ("May 26, 1939.", "May 26, 1939", 1.0),
        ("  Irving, TX  ", "Irving, TX", 1.0),
        (" May 26, 1938", "May 26, 1939", 0.0),
        (" may 26, 1939", "May 26, 1939", 0.0),  # exact: case matters
        (" May 26, 1939 and more", "May 26, 1939", 0.0),
        ("", "May 26, 1939", 0.0),
        (" St. Louis, MO", "St. Louis, MO", 1.0),
        (" Merck & Co.", "Merck & Co.", 0.0),  # one final period is dropped from the response only
    ],
)
def test_generative_exact_match(response, answer, score):
    assert process_gen({"answer": answer}, [response]) == {"exact_match": score}


def test_normalize_answer():
    assert normalize_answer("  Boston, MA . ") == "Boston, MA"


def test_task_files_follow_the_conventions():
    # The docs_qa* aliases of the corpus tasks (until 0.2) are checked on their own, below.
    yamls = sorted(p for p in TASKS_DIR.glob("*.yaml") if not p.stem.startswith("docs_qa"))
    readme = (TASKS_DIR / "README.md").read_text()
    assert len(yamls) == 57  # 7 generated families of 7 files, 5 reverse and 3 corpus tasks
    for path in yamls:
        config = load_yaml_config(str(path))
        name = config["group"] if "group" in config else config["task"]
        assert path.stem == name and name.startswith(("bios_qa", "corpus_qa"))
        assert config["metadata"]["version"] == 2.0  # 2.0: leak-free options (README changelog)
        assert f"`{name}`" in readme, f"{name} missing from lm_eval_tasks/README.md"


def test_bad_data_dir_raises_one_clear_line(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(BiosDataError, match=f"bios_qa data directory {missing} does not exist; run `make data`"):
        load_bios_qa("major", data_dir=str(missing))
    (tmp_path / "half").mkdir()
    with pytest.raises(BiosDataError, match="is malformed: .*qa/major.jsonl is missing; run `make data`"):
        load_bios_qa("major", data_dir=str(tmp_path / "half"))


def test_data_of_the_leaky_1x_generator_is_refused(bios_dir, tmp_path):
    import shutil

    from engram_data.contract import DataError
    from engram_eval.recall import load_questions

    old = tmp_path / "old"
    shutil.copytree(bios_dir, old)
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({**manifest, "generator_version": "1.0"}))
    message = f"{old} was written by generate_data 1.0, whose distractors a guesser"
    with pytest.raises(BiosDataError, match=message):
        load_bios_qa("major", data_dir=str(old))
    with pytest.raises(DataError, match=message):
        load_questions(old, tokenizer=None)


def test_env_var_points_at_the_data(bios_dir, monkeypatch):
    monkeypatch.setenv("ENGRAM_DATA_DIR", str(bios_dir))
    ds = load_bios_qa("employer")["test"]
    assert len(ds) == len(qa_rows(bios_dir, "employer", "train"))


def run_eval_cli(program: list[str], model: Path, tasks: str, limit: int, out: Path, cwd: Path, env: dict, *extra: str):
    """One lm-eval command line on the hf backend, CPU, results in ``out``."""
    argv = [
        *program,
        "--model",
        "hf",
        "--model_args",
        f"pretrained={model},dtype=float32",
        "--tasks",
        tasks,
        "--limit",
        str(limit),
        "--device",
        "cpu",
        "--batch_size",
        "8",
        "--output_path",
        str(out),
        *extra,
    ]
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def check_result_file(out: Path, tasks: list[str], limit: int):
    (result_file,) = list(out.rglob("results_*.json"))
    results = json.loads(result_file.read_text())["results"]
    for task in tasks:
        assert task in results
    for field in FIELDS:
        assert 0.0 <= results[f"bios_qa_{field}"]["acc,none"] <= 1.0
        assert results[f"bios_qa_{field}"]["acc,none"] * limit == pytest.approx(
            round(results[f"bios_qa_{field}"]["acc,none"] * limit)
        )
    return results


@pytest.mark.slow
def test_every_task_runs_on_a_tiny_model_via_the_console_script_from_another_dir(bios_dir, tiny_llama, tmp_path):
    out = tmp_path / "results"
    engram_eval = [str(Path(sys.executable).parent / "engram-eval")]
    run_eval_cli(engram_eval, tiny_llama, ",".join(ALL_TASKS), 3, out, tmp_path, cli_env(ENGRAM_DATA_DIR=str(bios_dir)))
    subtasks = [f"{g}_{f}" for g in GEN_TASKS for f in FIELDS]
    results = check_result_file(out, [*ALL_TASKS, *subtasks], limit=3)
    for task in GEN_TASKS:  # the floor of exact match: an untrained model names nothing
        assert results[task]["exact_match,none"] == 0.0, results[task]


@pytest.mark.slow
def test_plain_lm_eval_with_include_path_and_simple_evaluate(bios_dir, tiny_llama, task_manager, tmp_path):
    out = tmp_path / "results"
    lm_eval = [str(Path(sys.executable).parent / "lm_eval")]
    metadata = json.dumps({"data_dir": str(bios_dir)})
    run_eval_cli(
        lm_eval,
        tiny_llama,
        "bios_qa",
        4,
        out,
        REPO,
        cli_env(),
        "--include_path",
        "lm_eval_tasks",
        "--metadata",
        metadata,
    )
    cli = check_result_file(out, ["bios_qa"], limit=4)

    api = simple_evaluate(
        model="hf",
        model_args=f"pretrained={tiny_llama},dtype=float32",
        tasks=["bios_qa"],
        limit=4,
        device="cpu",
        batch_size=8,
        task_manager=task_manager,
    )["results"]
    for field in FIELDS:  # the same model and questions give the same numbers both ways
        assert api[f"bios_qa_{field}"]["acc,none"] == cli[f"bios_qa_{field}"]["acc,none"]
    assert api["bios_qa"]["acc,none"] == pytest.approx(cli["bios_qa"]["acc,none"])


def test_console_script_reports_a_missing_data_dir_in_one_line(tmp_path):
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "engram-eval"), "--model", "dummy", "--tasks", "bios_qa"],
        cwd=tmp_path,
        env=cli_env(ENGRAM_DATA_DIR=str(tmp_path / "missing")),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"bios_qa data directory {tmp_path / 'missing'} does not exist; run `make data`")
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def lm_eval_0_4_13(tmp_path_factory) -> Path:
    """The newest lm-eval release, layered over the venv (its dependencies are the same)."""
    target = tmp_path_factory.mktemp("lm_eval_0_4_13")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), "lm_eval==0.4.13"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"could not install lm_eval==0.4.13 from the package registry: {proc.stderr[-500:]}")
        pytest.skip("lm_eval==0.4.13 is not installable here (no package registry)")
    return target


@pytest.mark.slow
def test_tasks_work_with_lm_eval_0_4_13(bios_dir, tiny_llama, tmp_path, lm_eval_0_4_13):
    out = tmp_path / "results"
    program = [
        sys.executable,
        "-c",
        "import lm_eval, sys; print(lm_eval.__version__); from lm_eval_tasks.cli import main; main(sys.argv[1:])",
    ]
    env = cli_env(ENGRAM_DATA_DIR=str(bios_dir), PYTHONPATH=str(lm_eval_0_4_13))
    tasks = ["bios_qa", "bios_qa_letters_5shot", "bios_qa_gen", "bios_qa_reverse"]
    proc = run_eval_cli(program, tiny_llama, ",".join(tasks), 3, out, tmp_path, env)
    assert proc.stdout.splitlines()[0] == "0.4.13"
    check_result_file(out, tasks, limit=3)


@pytest.mark.parametrize("old", ["docs_qa", "docs_qa_heldout", "docs_qa_gen"])
def test_the_old_documents_task_names_are_the_corpus_tasks_until_0_2(old):
    """docs_qa* (before data version 2.3) include corpus_qa*: the same keys, but for the name."""
    from lm_eval.utils import load_yaml_config

    def config(name):
        c = load_yaml_config(str(TASKS_DIR / f"{name}.yaml"))
        return {k: getattr(v, "__qualname__", v) for k, v in c.items() if k != "task"}

    new = old.replace("docs", "corpus")
    assert load_yaml_config(str(TASKS_DIR / f"{old}.yaml"))["task"] == old
    assert config(old) == config(new)
