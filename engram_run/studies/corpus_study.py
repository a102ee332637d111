"""``make corpus-study``: does the documents recipe work? A closed loop with known truth.

A fresh bioS population's biographies, as documents (half text, half PDF), go through the
user's path: ``engram-data corpus`` asks a generator (``transformers serve``, the ``openai``
client) for question-answer pairs; the documents recipe trains one initial model per arm:

- ``chunks``: the documents' text only;
- ``qa1``: the text and the pairs written at one temperature (the schedule's middle);
- ``qa9``: the text and the pairs written at all nine temperatures (0.01 to 1.2);
- ``qa9-grounded``: those pairs without the ones the passage does not support (the default of
  ``engram-data corpus``; every other arm keeps them, ``--keep-ungrounded``);
- ``qa9+reverse``: those and the generator's reverse pairs (the person asked for from facts).

Each arm is scored by lm-eval on the people's **true** facts (their ``bios_qa`` data, not the
generator's pairs): forward and reverse, four-option and exact; the untrained model too (the
floor). The generator's pairs are judged against the truth per temperature (corpus_generator.judge).

The generator is the real SmolLM2-135M-Instruct (``make pretrained``), served here, few-shot;
``--generator taught``: a small model taught here the format (corpus_generator; once per
settings and code), asked plainly; ``--generator openai:URL`` any served model.
``--model smollm2-135m``: each arm fine-tunes that recipe's pretrained base instead.

    RESULTS/corpus-study.json, .md, .png   per arm: recall, stderr, trained pairs, their truth, coverage;
                                         per temperature: the generator's pairs and their truth
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from engram_data.contract import PEOPLE, read_jsonl
from engram_run.runs import launch
from engram_run.runs.corpus import CHUNKS, DEFAULT_GENERATOR, CorpusSettings, corpus_config, generate
from engram_run.runs.recipes import RECIPES_DIR, RunError, load_recipe, recipe_path, write_config
from engram_run.runs.serve import served
from engram_run.studies import corpus_generator
from engram_run.studies.common import lm_eval_row, text_size, timer
from engram_run.studies.corpus_generator import (
    STYLES,
    build_generator,
)
from engram_run.studies.corpus_report import SCORES, write_results
from engram_run.studies.corpus_truth import generator_accuracy, trained_pairs, truths

GENERATOR_STAMP = "taught.json"  # in the generator's folder, once it is taught
TAUGHT = "taught"  # --generator: the small model taught here
ONE_TEMPERATURE = 0.605  # the nine-step schedule's middle (0.01 + 4 x 0.14875)
T1 = (str(ONE_TEMPERATURE),)
# arm -> (generation run it trains on, or None: chunks only)
ARMS = {"chunks": None, "qa1": "qa1", "qa9": "qa9", "qa9-grounded": "qa9_grounded", "qa9+reverse": "qa9_reverse"}
# generation run -> engram-data corpus flags (one request cache for all); every run but
# qa9_grounded trains all parsed pairs (--keep-ungrounded), as these arms always have
GENERATIONS = {
    "qa9_reverse": ("--styles", ",".join(STYLES), "--temperatures", "9", "--keep-ungrounded"),
    "qa9": ("--styles", "simple", "--temperatures", "9", "--keep-ungrounded"),
    "qa9_grounded": ("--styles", "simple", "--temperatures", "9"),
    "qa1": ("--keep-ungrounded", *"--styles simple --temperatures 1 --temp-min".split(), *T1, "--temp-max", *T1),
}


@dataclass(frozen=True)
class CorpusStudySettings:
    # the documents' people: 16 with a real generator (19 requests each, ~4 s a request on 2
    # cores), 60 with the taught one (fast); an explicit number for either
    people: int | None = None
    teach_people: int = 3000  # the generator's own population (none of them in the documents)
    generator_steps: int = 3000  # batches of 16 rows
    # what each arm trains: tiny (one random Llama of hidden x layers, from scratch) or a recipe
    # (smollm2-135m: its pretrained base, fine-tuned)
    model: str = "tiny"
    # tiny: every arm this many optimizer steps (the same compute; a smaller data set repeats more)
    steps: int = 600
    # a pretrained base: every arm this many passes over its own texts, one text a step (the
    # finetune study's full-b1, which memorized bioS QA at 6): each arm learns what it trains on
    epochs: int = 6
    hidden: int = 128
    layers: int = 4
    vocab_size: int = 2048
    learning_rate: float | None = None  # default 1e-3 (tiny) or the recipe's own
    micro_batch: int | None = None  # default 2 packed rows of 256 tokens (tiny) or 1 text (a pretrained base)
    arms: tuple[str, ...] = tuple(ARMS)
    # the generator: a local model folder (served here by transformers serve; default the real
    # SmolLM2-135M-Instruct of make pretrained), "taught" (a small model taught here), or openai:URL
    generator: str = DEFAULT_GENERATOR
    generator_model: str | None = None
    tokenizer: str | None = None  # to chunk by, with --generator
    data_dir: Path = Path("data/corpus-study")
    outputs: Path = Path("outputs/corpus-study")
    results: Path = Path("results/corpus-study")


def write_documents(pop: Path, out: Path) -> Path:
    """One document per person: its bioS biography, even ids as text, odd ids as a PDF."""
    from fpdf import FPDF

    launch.remove_own(out)
    launch.claim(out)
    for p in read_jsonl(pop / PEOPLE):
        path = out / f"person-{p['id']:04d}"
        if p["id"] % 2 == 0:
            path.with_suffix(".txt").write_text(p["bioS"] + "\n")
            continue
        pdf = FPDF()
        pdf.set_font("helvetica", size=11)
        pdf.add_page()
        pdf.multi_cell(0, 6, p["bioS"])
        pdf.output(str(path.with_suffix(".pdf")))
    return out


PEOPLE_DEFAULT = {"served": 16, TAUGHT: 60}
MICRO_BATCH_DEFAULT = {"tiny": 2, "pretrained": 1}  # packed rows of 256 tokens / texts
# A pretrained base's arms, as finetune-study's: bf16 autocast over fp32 master weights (fp32 ran
# ~50 tokens/s), fused AdamW, unpacked texts (Axolotl: packing under sdpa and bf16 may give a loss
# of 0), no checkpointing, an update per micro-batch (the recipe's effective batch is 8).
PRETRAINED_ARM = {
    **{"bf16": True, "optimizer": "adamw_torch_fused", "gradient_checkpointing": False},
    **{"sample_packing": False, "pad_to_sequence_len": False},
}


def with_defaults(s: CorpusStudySettings) -> CorpusStudySettings:
    """The settings with what depends on the generator and the model filled in; a pretrained
    base writes into outputs/ and results/ ``corpus-study-<model>`` (the tiny model's stay)."""
    tiny = s.model == "tiny"
    changes = {
        "people": s.people or PEOPLE_DEFAULT[TAUGHT if s.generator == TAUGHT else "served"],
        "micro_batch": s.micro_batch or MICRO_BATCH_DEFAULT["tiny" if tiny else "pretrained"],
        "learning_rate": s.learning_rate or (1e-3 if tiny else load_recipe(recipe_path(s.model))["learning_rate"]),
    }
    for key in ("outputs", "results"):
        if not tiny and getattr(s, key) == getattr(CorpusStudySettings, key):
            changes[key] = getattr(s, key).with_name(f"corpus-study-{s.model}")
    return dataclasses.replace(s, **changes)


def corpus_study(s: CorpusStudySettings) -> Path:
    step = timer("corpus-study")
    s = with_defaults(s)

    unknown = [a for a in s.arms if a not in ARMS]
    if unknown or not s.arms:
        raise RunError(f"unknown arm {', '.join(unknown) or '(none)'}; choose from {', '.join(ARMS)}")
    if s.generator.startswith("hf:"):
        raise RunError(
            f"--generator {s.generator}: the study serves its generator; pass the folder itself, taught, or openai:URL"
        )
    if not (s.generator == TAUGHT or s.generator.startswith("openai:") or Path(s.generator, "config.json").exists()):
        hint = "run make pretrained" if Path(s.generator) == Path(DEFAULT_GENERATOR) else "pass a model folder"
        raise RunError(f"--generator {s.generator}: no model folder there; {hint}, or --generator taught / openai:URL")
    for folder in (s.outputs, s.data_dir):
        if folder.exists() and not (folder / launch.MARKER).exists():
            raise RunError(f"{folder} exists and was not written by corpus-study; move it away or choose another")
    launch.claim(s.data_dir)
    launch.claim(s.outputs)
    pop = s.data_dir / "population"
    step(f"generating {s.people} people into {pop}; their biographies as documents")
    launch.generate_data(pop, s.people, seed=7, variants=("bioS",), extra=("--heldout-fraction", "0"))
    corpus = write_documents(pop, s.data_dir / "documents")
    runs = sorted({ARMS[a] or "qa9" for a in s.arms}, key=list(GENERATIONS).index)  # chunks: qa9's text
    with generator_url(s, step) as (url, name, tokenizer):
        for run in runs:
            step(f"{run}: question-answer pairs through {url}")
            generate(
                CorpusSettings(
                    (str(corpus),),
                    f"openai:{url}",
                    name,
                    tokenizer,
                    data_dir=s.data_dir / run,
                    generate_args=(
                        *GENERATIONS[run],
                        # the taught generator was taught the instruction alone
                        *("--prompt", "plain" if s.generator == TAUGHT else "few-shot"),
                        # one request at a time: the server seeds torch's one generator per request
                        *("--concurrency", "1"),
                        "--heldout-temperatures",
                        "0",
                        "--cache",
                        str(s.data_dir / "generator.cache"),
                        "--no-progress",
                    ),
                )
            )
    if s.model == "tiny":
        step(f"building one random Llama (hidden {s.hidden}, {s.layers} layers) for every arm")
        launch.remove_own(s.outputs / "init")
        init = launch.build_model(
            pop,
            s.outputs / "init",
            s.outputs / "build.log",
            hidden=s.hidden,
            layers=s.layers,
            vocab_size=s.vocab_size,
            seed=0,
        )
    else:  # the un-tuned base is the floor: a model with priors over real places and firms
        init = Path(load_recipe(recipe_path(s.model))["base_model"])
    rows = {"untrained": score(init, pop, s.outputs / "untrained", step, "untrained")}
    truth = truths(pop)
    for arm in s.arms:
        data = s.data_dir / (ARMS[arm] or "qa9")
        folder = launch.claim(s.outputs / arm.replace("+", "_"))
        cfg = arm_config(s, arm, data, init, folder / "model")
        config = write_config(cfg, folder / "config.yml")
        launch.start_over_unless_resumable(config, folder / "model", force=True)
        length = f"{s.steps} steps" if s.model == "tiny" else f"{s.epochs} epochs"
        step(f"{arm}: axolotl train, {length} (log: {folder / 'train.log'})")
        if not launch.train(config, folder / "model", folder / "train.log"):
            raise RunError(f"training {arm} failed; see {folder / 'train.log'}")
        rows[arm] = score(folder / "model", pop, folder / "lm_eval", step, arm)
        rows[arm] |= trained_pairs(data, truth, ARMS[arm] is not None)
        rows[arm]["text_chars"] = sum(text_size(Path(d["path"])) for d in cfg["datasets"])
    per_t = generator_accuracy(s.data_dir / "qa9_reverse", truth) if "qa9_reverse" in runs else {}
    path = write_results(rows, per_t, s)
    step(f"done: {path}")
    return path


@contextlib.contextmanager
def generator_url(s: CorpusStudySettings, step):
    """(base URL, model name, tokenizer folder) of the generator: a served instruct model, or a
    local one (the real model, or the one taught here) served by ``transformers serve`` for as
    long as the block runs. Not with continuous batching: in transformers 5.16 it takes the
    first request's sampling parameters for every request (its own TODO), so nine temperatures
    through it are one."""
    if s.generator.startswith("openai:"):
        yield s.generator.removeprefix("openai:"), s.generator_model, s.tokenizer
        return
    if s.generator != TAUGHT:
        model = Path(s.generator)
        log = s.outputs / "generator-serve.log"
        step(f"serving {model}: transformers serve (log: {log})")
        with served(model, log) as url:
            yield url, str(model), str(model)
        return
    folder = s.outputs / "generator"
    stamp = generator_stamp(s)
    if (folder / GENERATOR_STAMP).exists() and json.loads((folder / GENERATOR_STAMP).read_text()) == stamp:
        step(f"the generator taught before ({folder}): the same people, steps and code; delete it to teach again")
    else:
        step(f"teaching the generator on {s.teach_people} other people, {s.generator_steps} steps ({folder})")
        build_generator(s.data_dir / "teach", folder, s.teach_people, s.generator_steps)
        (folder / GENERATOR_STAMP).write_text(json.dumps(stamp, indent=1) + "\n")  # written last: only a finished one
    model = folder / "model"
    step(f"serving it: transformers serve (log: {folder / 'serve.log'})")
    with served(model, folder / "serve.log") as url:
        yield url, str(model), str(model)


def generator_stamp(s: CorpusStudySettings) -> dict:
    """What the taught generator depends on: its settings and its teaching code (sha256)."""
    code = hashlib.sha256(Path(corpus_generator.__file__).read_bytes()).hexdigest()
    return {"teach_people": s.teach_people, "generator_steps": s.generator_steps, "code_sha256": code}


def arm_config(s: CorpusStudySettings, arm: str, data: Path, init: Path, model_dir: Path) -> dict:
    """The documents recipe (tiny, or MODEL's) for one arm: rows of 256 tokens, no evaluation
    during training, the final model scored."""
    tiny = s.model == "tiny"
    cfg = corpus_config(
        RECIPES_DIR / "tiny-full.yml" if tiny else recipe_path(s.model),
        data,
        model_dir,
        {
            "base_model": str(init),
            **({"max_steps": s.steps} if tiny else {"num_epochs": s.epochs, "engram_effective_batch": s.micro_batch}),
            "learning_rate": s.learning_rate,
            "micro_batch_size": s.micro_batch,
            "gradient_accumulation_steps": 1,
            "sequence_len": 256,
            "val_set_size": 0.0,
            "engram_recall_eval": False,
            "eval_strategy": "no",
            "save_strategy": "no",
            **({} if tiny else PRETRAINED_ARM),
        },
    )
    for key in ("evals_per_epoch", "saves_per_epoch", "metric_for_best_model", "greater_is_better", "save_total_limit"):
        cfg.pop(key, None)
    if ARMS[arm] is None:
        cfg["datasets"] = [d for d in cfg["datasets"] if Path(d["path"]).stem == CHUNKS]
    return cfg


def score(model: Path, pop: Path, out: Path, step, label: str) -> dict:
    step(f"{label}: lm-eval on the true facts")
    launch.remove_own(out)
    row = lm_eval_row(model, str(model), pop, out, SCORES, label)
    sc = row["scores"]
    step(
        f"{label}: forward {sc['forward']:.3f} (four-option), {sc['forward_exact']:.3f} (exact); "
        f"reverse {sc['reverse']:.3f}, {sc['reverse_exact']:.3f}"
    )
    return row
