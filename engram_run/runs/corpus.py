"""Your documents, end to end (``make corpus-train``).

CORPUS -> ``engram-data corpus`` (question-answer pairs from a generator LLM, requests cached) ->
the documents recipe (MODEL's own recipe with the documents' chunks and trained pairs as its
datasets, a constant learning rate, and the plugin's recall on the documents' questions) ->
``axolotl train`` (resumes an interrupted run) -> lm-eval ``corpus_qa``, ``corpus_qa_heldout``,
``corpus_qa_gen`` -> the report (``make report``'s, with the documents' columns).

    DATA_DIR (default data/corpus-<name>)      the QA data; DATA_DIR.cache the generator's replies
    outputs/<model>-<method>-corpus-<name>/    config.yml, model/, train.log, as any run
    results/<model>-<method>-corpus-<name>/    lm-eval's own JSON

MODEL=tiny is a small Llama built from the documents' own text and trained from scratch (a
CPU); any other recipe fine-tunes its base model (a GPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engram_data.contract import QA_TRAIN, read_manifest, train_file
from engram_eval.lm_eval_args import model_args
from engram_run.runs import evaluation, launch
from engram_run.runs.recipes import (
    PLUGIN,
    RunError,
    derive_config,
    for_gpus,
    load_recipe,
    recipe_path,
    validate,
    write_config,
)
from engram_run.runs.serve import served

DEFAULT_GENERATOR = "models/smollm2-135m"  # make pretrained's SmolLM2-135M-Instruct, served here
CORPUS_TASKS = ("corpus_qa", "corpus_qa_heldout", "corpus_qa_gen")
CHUNKS = "chunks"  # train/chunks.jsonl: the documents' text, cut as the generator read it
DATA_SUM = ".engram_data_sha256"  # the QA data a finished run trained on


@dataclass(frozen=True)
class CorpusSettings:
    corpus: tuple[str, ...] = ()  # files or folders: .pdf .docx .html .md .txt
    generator: str = DEFAULT_GENERATOR  # a local model folder (served here), hf:PATH or openai:URL
    generator_model: str | None = None  # the served model's name, for openai:
    tokenizer: str | None = None  # the tokenizer to chunk by, for openai:
    generate_args: tuple[str, ...] = ()  # more `engram-data corpus` flags, as it spells them
    model: str = "tiny"
    method: str | None = None
    hidden: int = 128  # MODEL=tiny: its width and depth
    layers: int = 4
    name: str | None = None  # default: the first input's name
    data_dir: Path | None = None  # default: data/corpus-<name>
    overrides: dict = field(default_factory=dict)
    force: bool = False
    gpus: int = 1
    outputs: Path = Path("outputs")
    results: Path = Path("results")

    @property
    def label(self) -> str:
        return self.name or Path(self.corpus[0]).stem

    @property
    def data(self) -> Path:
        return self.data_dir or Path("data") / f"corpus-{self.label}"


def is_model_folder(generator: str) -> bool:
    return not generator.startswith(("hf:", "openai:")) and Path(generator, "config.json").exists()


def check_generator(generator: str) -> None:
    """RunError unless ``generator`` is hf:PATH, openai:URL or a local model folder."""
    if generator.startswith(("hf:", "openai:")) or is_model_folder(generator):
        return
    hint = "run make pretrained" if Path(generator) == Path(DEFAULT_GENERATOR) else "pass a model folder"
    raise RunError(f"--generator {generator}: no model folder there; {hint}, or hf:PATH / openai:URL")


@contextlib.contextmanager
def served_generator(s: CorpusSettings, log: Path, step=print) -> Iterator[CorpusSettings]:
    """``s`` as it is, or, where its generator is a local model folder, ``s`` asking that folder
    served by ``transformers serve`` (through the ``openai`` client) for as long as the block
    runs. One request at a time and without continuous batching: in transformers 5.16 that takes
    the first request's sampling parameters for every request (its own TODO), so nine
    temperatures through it would be one; and the server seeds torch's one generator per request."""
    if not is_model_folder(s.generator):
        yield s
        return
    step(f"[engram] serving the generator {s.generator}: transformers serve (log: {log})")
    launch.claim(log.parent)
    with served(Path(s.generator), log) as url:
        yield dataclasses.replace(
            s,
            generator=f"openai:{url}",
            generator_model=s.generator,
            tokenizer=s.tokenizer or s.generator,
            generate_args=("--concurrency", "1", *s.generate_args),  # a user's own --concurrency comes later, and wins
        )


def generate(s: CorpusSettings) -> None:
    """``engram-data corpus`` into ``s.data``, its progress and its one error line shown as they
    come; a rerun sends only the requests not cached yet."""
    cmd = [
        launch.tool("engram-data"),
        "corpus",
        "--input",
        *s.corpus,
        "--out",
        str(s.data),
        "--generator",
        s.generator,
        "--overwrite",
        *(["--model", s.generator_model] if s.generator_model else []),
        *(["--tokenizer", s.tokenizer] if s.tokenizer else []),
        *s.generate_args,
    ]
    proc = subprocess.Popen(cmd, env=launch.tool_env(), stderr=subprocess.PIPE)
    error, pending = "", b""
    while chunk := proc.stderr.read1(4096):  # its progress bars and warnings, shown as they come
        pending += chunk
        *done, pending = re.split(rb"(?<=[\r\n])", pending)
        for piece in done:
            if piece.startswith(b"generate_data.py corpus: error: "):
                error = piece.decode(errors="replace").split(": error: ", 1)[1].strip()  # ours to say, once
            else:
                sys.stderr.buffer.write(piece)
        sys.stderr.flush()
    sys.stderr.buffer.write(pending)
    if proc.wait() != 0:
        raise RunError(
            f"no QA data from {', '.join(s.corpus)}: {error or f'engram-data corpus exited {proc.returncode}'}"
        )


def nothing_to_train(data_dir: Path) -> None:
    """RunError where the generator's replies gave no trained pair, saying what became of them."""
    c = read_manifest(data_dir)["counts"]
    if c.get("qa_train", 0) > 0:
        return
    kinds = ", ".join(
        f"{c[k]} {k.removeprefix('malformed_')}" for k in sorted(c) if k.startswith("malformed_") and c[k]
    )
    raise RunError(
        f"no question-answer pairs to train on in {data_dir}: of {c['requests_sent'] + c['requests_cached']} replies "
        f"{c['generations_malformed']} were malformed{f' ({kinds})' if kinds else ''}; of {c['pairs_parsed']} pairs "
        f"{c['pairs_ungrounded']} were ungrounded, {c['pairs_no_subject']} without their subject, "
        f"{c['pairs_duplicate']} duplicates and {c.get('pairs_without_distractors', 0)} without three other "
        "answers to be their options (see its generated.jsonl); ask at more temperatures "
        '(--generate-args "--temperatures 9"), keep what was dropped (--keep-ungrounded), or use a larger generator'
    )


@dataclass(frozen=True)
class DataSummary:
    """What a run needs to know of its QA data, read once from its manifest."""

    sha256: str  # of the data files' own sha256s (the manifest's other counts, e.g. cached requests, vary)
    heldout: bool  # held-out temperatures: corpus_qa_heldout has questions

    @classmethod
    def read(cls, data_dir: Path) -> DataSummary:
        manifest = read_manifest(data_dir)
        files = json.dumps(manifest["files"], sort_keys=True)
        return cls(hashlib.sha256(files.encode()).hexdigest() + "\n", manifest["counts"].get("qa_heldout", 0) > 0)

    @property
    def tasks(self) -> tuple[str, ...]:
        """The corpus tasks the data has questions for (no corpus_qa_heldout without held-out temperatures)."""
        return tuple(t for t in CORPUS_TASKS if self.heldout or t != "corpus_qa_heldout")


def corpus_config(
    recipe: Path, data_dir: Path, model_dir: Path, overrides: dict | None = None, data: DataSummary | None = None
) -> dict:
    """The documents recipe: ``recipe`` trained on the documents' chunks and trained pairs, at
    a constant rate, with the plugin (where the recipe lists it) scoring the documents'
    questions: the trained temperatures, and the held-out ones where there are any."""
    cfg = derive_config(recipe, data_dir, model_dir)
    text = {"ds_type": "json", "type": "completion", "field": "text"}
    cfg["datasets"] = [{"path": str(train_file(data_dir, name)), **text} for name in (CHUNKS, QA_TRAIN)]
    cfg["lr_scheduler"] = "constant"  # the same rate for the last fact as for the first
    for key in ("warmup_steps", "warmup_ratio", "cosine_min_lr_ratio"):
        cfg.pop(key, None)
    if PLUGIN in (cfg.get("plugins") or []):
        data = data or DataSummary.read(data_dir)
        cfg |= {"engram_eval_heldout": data.heldout, "engram_eval_reverse": False}
        if cfg.get("engram_post_eval"):
            cfg["engram_post_eval_tasks"] = list(data.tasks)
    return cfg | (overrides or {})


@dataclass(frozen=True)
class CorpusPlan:
    """A documents run, decided once from the settings and the generated data, and passed down."""

    recipe: Path
    run: str  # <model>-<method>-corpus-<name>
    run_dir: Path
    results_dir: Path
    data: DataSummary
    same_data: bool  # the run folder last trained on this same data (an interrupted run resumes)
    trained: bool  # a finished model trained on this same data (and no FORCE=1)
    scored: bool  # and evaluated on it

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"

    @classmethod
    def make(cls, s: CorpusSettings, recipe: Path, run: str) -> CorpusPlan:
        run_dir, results_dir = s.outputs / run, s.results / run
        data = DataSummary.read(s.data)
        same_data = (run_dir / DATA_SUM).exists() and (run_dir / DATA_SUM).read_text() == data.sha256
        trained = same_data and not s.force and launch.is_trained(run_dir / "model")
        scored = trained and (results_dir / DATA_SUM).exists() and (results_dir / DATA_SUM).read_text() == data.sha256
        return cls(recipe, run, run_dir, results_dir, data, same_data, trained, scored)


def corpus_train(s: CorpusSettings, step=print) -> dict:
    """Documents -> QA data -> trained model -> lm-eval scores; returns lm-eval's results."""
    recipe = recipe_path(s.model, s.method)
    run = f"{recipe.stem}-corpus-{s.label}"  # <model>-<method>, whether MODEL named the model or its recipe
    missing = [d for d in s.corpus if not Path(d).exists()]
    if missing:  # before the generator is loaded
        raise RunError(f"{missing[0]} does not exist; pass files or folders of documents (CORPUS=...)")
    check_generator(s.generator)
    step(f"[engram] {run}: question-answer pairs from {', '.join(s.corpus)} into {s.data}")
    with served_generator(s, s.outputs / run / "generator-serve.log", step) as asked:
        generate(asked)
    nothing_to_train(s.data)
    plan = CorpusPlan.make(s, recipe, run)
    if plan.trained:
        step(f"[engram] {run}: already trained on this data (FORCE=1 retrains)")
    else:
        train(s, plan, step)
    if plan.scored:
        step(f"[engram] {run}: already evaluated ({plan.results_dir})")
    else:
        score(s, plan, step)
    return evaluation.read_results(evaluation.latest_results(plan.results_dir))["results"]


def train(s: CorpusSettings, plan: CorpusPlan, step) -> None:
    run_dir = plan.run_dir
    launch.claim(run_dir)
    base = None
    if s.model == "tiny":  # a tokenizer of the documents' own text, and random weights
        step(f"[engram] {plan.run}: building a small Llama from the documents' text")
        launch.remove_own(run_dir / "init")
        base = launch.build_model(s.data, run_dir / "init", run_dir / "build.log", hidden=s.hidden, layers=s.layers)
    overrides = {**({"base_model": str(base)} if base else {}), **s.overrides}
    cfg = for_gpus(corpus_config(plan.recipe, s.data, plan.model_dir, overrides, plan.data), s.gpus)
    validate(cfg)
    write_config(cfg, run_dir / "config.yml")
    # An interrupted run on this same data resumes; new data (or FORCE=1) starts over.
    launch.start_over_unless_resumable(run_dir / "config.yml", plan.model_dir, s.force or not plan.same_data)
    (run_dir / DATA_SUM).write_text(plan.data.sha256)
    step(f"[engram] {plan.run}: axolotl train (log: {run_dir / 'train.log'})")
    if not launch.train(run_dir / "config.yml", plan.model_dir, run_dir / "train.log", launch.gpu_args(s.gpus)):
        raise RunError(f"training {plan.run} failed; see {run_dir / 'train.log'}")


def score(s: CorpusSettings, plan: CorpusPlan, step) -> None:
    tasks = plan.data.tasks
    step(f"[engram] {plan.run}: lm-eval {', '.join(tasks)} into {plan.results_dir}")
    launch.remove_own(plan.results_dir)
    base = load_recipe(plan.run_dir / "config.yml")["base_model"]
    if not evaluation.evaluate(model_args(plan.model_dir, base), s.data, plan.results_dir, tasks):
        raise RunError(f"evaluating {plan.run} failed; see {plan.results_dir / 'eval.log'}")
    (plan.results_dir / DATA_SUM).write_text(plan.data.sha256)
