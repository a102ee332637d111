"""The studies' command lines (``python -m engram_run reproduce|reversal|probe|capacity|localize``):
each parser's options are its settings dataclass's fields, with the dataclass's defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

from engram_data.contract import VARIANT_ALIASES, VARIANTS
from engram_data.errors import number
from engram_run.runs.settings import DEFAULT_VARIANT
from engram_run.studies.capacity import CapacitySettings, study
from engram_run.studies.finetune import ARMS as FINETUNE_ARMS
from engram_run.studies.finetune import FinetuneSettings, finetune_study
from engram_run.studies.floors import TASKS as FLOOR_TASKS
from engram_run.studies.floors import FloorsSettings, floors
from engram_run.studies.localize import STEPS, LocalizeSettings, endpoints, localize
from engram_run.studies.probes import ProbeSettings, probes
from engram_run.studies.reproduce import PROTOCOLS, SCALES, at_scale, reproduce
from engram_run.studies.reversal import ARMS, ReversalSettings, reversal

STUDY_COMMANDS = ("reproduce", "reversal", "probe", "capacity", "localize", "floors", "finetune-study")


def known_list(known: tuple[str, ...], what: str, aliases: dict[str, str] | None = None):
    """An argparse type: ``a,b`` of ``known`` names (text variants, protocols), each once, in
    ``known``'s order (``aliases``: older names of some); an unknown or empty one is argparse's
    one-line error."""

    def parse(text: str) -> tuple[str, ...]:
        names = [(aliases or {}).get(n.strip(), n.strip()) for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(unknown) or repr(text)}; choose from {', '.join(known)}"
            )
        return tuple(k for k in known if k in names)

    return parse


# The settings dataclasses' fields as options: --field-name, the type that checks it, the
# dataclass's default.
SETTING_TYPES = {
    "people": number(int, 8),
    "multi5_epochs": number(int, 1),
    "qa_epochs": number(int, 1),
    "epochs": number(int, 1),
    "hidden": number(int, 1),
    "layers": number(int, 1),
    "vocab_size": number(int, 300),
    "learning_rate": number(float, 0, low_open=True),
    "micro_batch": number(int, 1),
    "values_per_field": number(int, 4),
    "qa_people": number(int, 1),
    "teach_people": number(int, 8),
    "generator_steps": number(int, 1),
    "steps": number(int, 1),
    "eval_limit": number(int, 1),
    "data_dir": Path,
    "outputs": Path,
    "results": Path,
}


# make reproduce's sizes (each defaults to its --scale's).
REPRODUCE_TYPES = {
    "people": number(int, 8),
    "hidden": number(int, 16),
    "layers": number(int, 1),
    "vocab_size": number(int, 300),
    "sequence_len": number(int, 32),
    "micro_batch": number(int, 1),
    "steps": number(int, 1),
    "learning_rate": number(float, 0, low_open=True),
    "weight_decay": number(float, 0),
    "qa_share": number(float, 0),
    "qa_steps": number(int, 1),
    "qa_learning_rate": number(float, 0, low_open=True),
    "qa_lora_rank": number(int, 1),
    "qa_micro_batch": number(int, 1),
    "seed": number(int, 0),
    "data_dir": Path,
    "outputs": Path,
    "results": Path,
}


# The options every study that builds and trains a tiny model has, and where it writes.
TINY_MODEL_FIELDS = ("hidden", "layers", "vocab_size", "learning_rate", "micro_batch")
PATH_FIELDS = ("data_dir", "outputs", "results")


def add_settings(parser, defaults, fields: tuple[str, ...], **types) -> None:
    """``--field-name`` for each of ``fields``, typed by SETTING_TYPES (or ``types``), with
    ``defaults``' value as its default."""
    for field in fields:
        kind = types.get(field, SETTING_TYPES[field])
        parser.add_argument(f"--{field.replace('_', '-')}", type=kind, default=getattr(defaults, field))


def add_study_parsers(sub) -> None:
    rp = sub.add_parser("reproduce", help="Physics of LM 3.1 in the paper's protocol: every variant, one step budget")
    rp.add_argument(
        "--scale", choices=tuple(SCALES), default="default", help="the sizes: ci, default, reference, paper"
    )
    rp.add_argument("--model", default=None, help="tiny (a model from scratch) or a full recipe: llama1b, ...")
    # Every size defaults to the scale's (docs/reproduce.md lists them); an option given wins.
    for field, kind in REPRODUCE_TYPES.items():
        rp.add_argument(f"--{field.replace('_', '-')}", type=kind, default=None)
    rp.add_argument("--qa-finetune", choices=("lora", "full"), default=None, help="the QA fine-tune (default: lora)")
    rp.add_argument(
        "--variants",
        type=known_list(VARIANTS, "variant", VARIANT_ALIASES),
        default=None,
        help=f"comma-separated, from {','.join(VARIANTS)} (default: the scale's)",
    )
    rp.add_argument(
        "--protocols",
        type=known_list(PROTOCOLS, "protocol"),
        default=None,
        help="comma-separated: mixed (biographies + QA in one run), bio_then_qa (biographies, then a "
        "QA fine-tune); default: the scale's",
    )
    rv = sub.add_parser("reversal", help="reversal remedies on one budget: reverse recall of heldout and train people")
    vdefaults = ReversalSettings()
    add_settings(
        rv,
        vdefaults,
        (
            "people",
            "multi5_epochs",
            *TINY_MODEL_FIELDS,
            *PATH_FIELDS,
        ),
    )
    rv.add_argument(
        "--arms",
        type=known_list(tuple(ARMS), "arm"),
        default=vdefaults.arms,
        help=f"comma-separated, from {','.join(ARMS)} (default: all)",
    )
    pb = sub.add_parser("probe", help="P- and Q-probes of bioS vs bioS_multi5_permutes models (Physics of LM 3.1)")
    pdefaults = ProbeSettings()
    add_settings(
        pb,
        pdefaults,
        (
            "people",
            "values_per_field",
            "multi5_epochs",
            *TINY_MODEL_FIELDS,
            *PATH_FIELDS,
        ),
    )
    pb.add_argument("--variants", type=known_list(VARIANTS, "variant", VARIANT_ALIASES), default=pdefaults.variants)
    ca = sub.add_parser("capacity", help="knowledge capacity of tiny models of a few sizes (Physics of LM 3.3)")
    cdefaults = CapacitySettings()

    def int_list(text: str) -> tuple[int, ...]:
        values = tuple(number(int, 1)(t) for t in text.split(",") if t.strip())
        if not values:
            raise argparse.ArgumentTypeError("give comma-separated positive integers, e.g. 50,200")
        return values

    ca.add_argument("--people", type=int_list, default=cdefaults.people, help="population sizes, e.g. 50,200")
    ca.add_argument("--hidden", type=int_list, default=cdefaults.hidden, help="model widths, e.g. 32,64,128")
    add_settings(
        ca,
        cdefaults,
        (
            "layers",
            "epochs",
            "learning_rate",
            "micro_batch",
            "vocab_size",
            "qa_people",
            *PATH_FIELDS,
        ),
    )
    lo = sub.add_parser("localize", help="engram-localize diff, graft, prune and trace on a trained run")
    lo.add_argument("--model", required=True, help="demo (make demo's run) or a recipe name")
    lo.add_argument("--method", default=None)
    lo.add_argument("--variant", default=DEFAULT_VARIANT, choices=VARIANTS)
    lo.add_argument("--data-dir", default=None, help="default: the run's data (data/demo for the demo, else data/bios)")
    lo.add_argument("--outputs", default="outputs", type=Path)
    lo.add_argument("--results", default="results", type=Path)
    ldefaults = LocalizeSettings()
    lo.add_argument("--fractions", default=ldefaults.fractions)
    lo.add_argument("--scope", default=ldefaults.scope, choices=("global", "layer", "module"))
    lo.add_argument("--trace-limit", type=number(int, 1), default=ldefaults.trace_limit)
    lo.add_argument("--eval-limit", type=number(int, 1), default=None)
    lo.add_argument(
        "--steps",
        type=lambda t: tuple(x for x in STEPS if x in t.split(",")),
        default=STEPS,
        help=f"comma-separated, from {','.join(STEPS)}",
    )
    add_floors_parser(sub)
    add_finetune_parser(sub)


def add_finetune_parser(sub) -> None:
    ft = sub.add_parser(
        "finetune-study", help="fine-tune a pretrained model on bioS: batch 1/8/32, LoRA, and what it forgot"
    )
    d = FinetuneSettings()
    arms = known_list(tuple(FINETUNE_ARMS), "arm")
    ft.add_argument("--model", type=Path, default=d.model, help="a model folder (default: make pretrained's)")
    add_settings(ft, d, ("people", "epochs", "learning_rate", *PATH_FIELDS))
    ft.add_argument("--lora-learning-rate", type=number(float, 0, low_open=True), default=d.lora_learning_rate)
    ft.add_argument("--lora-batch", type=number(int, 1), default=d.lora_batch)
    ft.add_argument("--arms", type=arms, default=d.arms, help=f"comma-separated, from {','.join(FINETUNE_ARMS)}")
    ft.add_argument("--repeat", type=arms, default=d.repeat, help="arms run on every seed (the others: the first)")
    ft.add_argument(
        "--seeds",
        type=lambda t: tuple(number(int, 0)(x) for x in t.split(",") if x.strip()) or (0,),
        default=d.seeds,
        help="comma-separated training seeds, e.g. 0,1",
    )
    ft.add_argument("--limit", type=number(int, 1), default=None, help="questions per task scored (default: all)")


def add_floors_parser(sub) -> None:
    fl = sub.add_parser("floors", help="a model's bioS scores before fine-tuning, per field, beside chance")
    fdefaults = FloorsSettings()
    fl.add_argument("--model", type=Path, default=fdefaults.model, help="a model folder (default: make pretrained's)")
    fl.add_argument("--people", type=number(int, 8), default=fdefaults.people)
    fl.add_argument("--limit", type=number(int, 1), default=None, help="questions per field (default: all)")
    fl.add_argument("--tasks", type=known_list(tuple(FLOOR_TASKS), "task"), default=fdefaults.tasks)
    fl.add_argument("--data-dir", type=Path, default=fdefaults.data_dir)
    fl.add_argument("--results", type=Path, default=fdefaults.results)


def study_command(args) -> int:
    if args.command == "capacity":
        settings = CapacitySettings(
            **{k: v for k, v in vars(args).items() if k in CapacitySettings.__dataclass_fields__}
        )
        print(f"capacity: {study(settings)}")
    elif args.command == "localize":
        base, tuned, data, out = endpoints(
            args.model, args.method, args.variant, args.data_dir, args.outputs, args.results
        )
        settings = LocalizeSettings(
            args.fractions,
            args.scope,
            args.trace_limit,
            args.eval_limit,
            args.steps,
            args.variant if args.model != "demo" else "bioS",
        )
        print(f"localization: {localize(base, tuned, data, out, settings)}")
    elif args.command == "reproduce":
        given = {k: v for k, v in vars(args).items() if v is not None and k not in ("command", "scale")}
        reproduce(at_scale(args.scale, **given))
    else:
        settings, job = {
            "floors": (FloorsSettings, floors),
            "finetune-study": (FinetuneSettings, finetune_study),
            "reversal": (ReversalSettings, reversal),
            "probe": (ProbeSettings, probes),
        }[args.command]
        job(settings(**{k: v for k, v in vars(args).items() if k in settings.__dataclass_fields__}))
    return 0
