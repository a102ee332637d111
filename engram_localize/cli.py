"""engram-localize: where in the weights a fine-tuned model keeps the facts it memorized.

Usage:
    engram-localize diff  --base B --tuned T --out DIR [--thresholds 1e-5,1e-4,1e-3,1e-2]
    engram-localize graft --base B --tuned T --data D --out DIR [--fractions 0,0.001,0.01,0.1,1] [--scope global]
    engram-localize prune --base B --tuned T --data D --out DIR [...as graft]
    engram-localize graft --base B --tuned T --save DIR --fraction 0.01     (writes one grafted model)
    engram-localize trace --model T --data D --out DIR [--limit 20] [--noise 3] [--window 1]
    engram-localize probe --model T --data D --out DIR [--variant bioS] [--seed 0]

B and T are model folders (or Hub names) of one architecture; T may be a LoRA adapter
folder (merged into its base with peft for the comparison; --base defaults to the base
the adapter names). Each subcommand writes DIR/<subcommand>/ and updates DIR/summary.md.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path

from engram_data.atomic import atomic_output, check_output_dir
from engram_data.contract import FIELDS, DataError, read_manifest
from engram_data.errors import OneLineParser, number, run_cli
from engram_localize.checkpoints import (
    Checkpoint,
    LocalizeError,
    adapter_base,
    load_model,
    load_tokenizer,
    paired_names,
    tuned_folder,
)
from engram_localize.outputs import GENERATOR, check_out, existing_parent, section, write_json
from engram_localize.select import SCOPES

DEFAULT_FRACTIONS = "0,0.001,0.01,0.1,1"


def number_list(kind: str, low: float, high: float | None = None):
    """``1e-4,1e-3``: numbers in [low, high], each once, ascending."""

    def parse(text: str) -> list[float]:
        check = number(float, low, high)
        values = sorted({check(part.strip()) for part in text.split(",") if part.strip()})
        if not values:
            raise argparse.ArgumentTypeError(f"give at least one {kind}, comma-separated")
        return values

    parse.__name__ = f"{kind} list"
    return parse


def field_list(text: str) -> tuple[str, ...]:
    """``birth_city,major``: bioS fields, in the data's order."""
    names = {part.strip() for part in text.split(",") if part.strip()}
    if not names or names - set(FIELDS):
        raise argparse.ArgumentTypeError(f"choose fields from {','.join(FIELDS)} (got {text!r})")
    return tuple(f for f in FIELDS if f in names)


def layer_list(text: str) -> list[int]:
    """``0,14,29``: layer indices, each once, ascending (checked against the model later)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"layers are comma-separated whole numbers from 0 (got {text!r})")
    return sorted({int(part) for part in parts})


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=GENERATOR, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, model_flag: str = "--tuned") -> None:
        p.add_argument(model_flag, required=True, help="fine-tuned model folder, or a LoRA adapter folder")
        p.add_argument("--base", help="the model it was tuned from (default for an adapter: the base it names)")
        p.add_argument("--overwrite", action="store_true", help="replace this subcommand's earlier output in --out")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")

    d = sub.add_parser("diff", help="per tensor and per layer x module: how much the weights changed")
    common(d)
    d.add_argument("--out", required=True, type=Path)
    d.add_argument(
        "--thresholds",
        type=number_list("threshold", 0),
        default=[1e-5, 1e-4, 1e-3, 1e-2],
        help="count weights whose |change| is above each (default: 1e-5,1e-4,1e-3,1e-2)",
    )
    for name, helptext in (
        ("graft", "base + the top fraction of changes: recall per fraction"),
        ("prune", "tuned with the top fraction of changes reverted: recall per fraction"),
    ):
        g = sub.add_parser(name, help=helptext)
        common(g)
        g.add_argument("--data", type=Path, help="generated bioS data whose QA sets score each point")
        g.add_argument("--out", type=Path)
        g.add_argument("--fractions", type=number_list("fraction", 0, 1), default=DEFAULT_FRACTIONS)
        g.add_argument(
            "--scope",
            choices=SCOPES,
            default="global",
            help="top-k over all tensors (global), within each layer, or within each tensor (module)",
        )
        g.add_argument("--limit", type=number(int, 1), help="score the first N questions per field and set")
        g.add_argument("--batch-size", type=number(int, 1), default=32)
        g.add_argument("--device", default=None, help="cuda or cpu (default: cuda when there is one)")
        g.add_argument(
            "--save",
            dest="save_dir",
            type=Path,
            help="write the one model at --fraction here instead of scoring a curve",
        )
        g.add_argument("--fraction", type=number(float, 0, 1), help="with --save")
    t = sub.add_parser("trace", help="causal tracing at the subject's tokens, per field")
    common(t, "--model")
    t.add_argument("--data", required=True, type=Path)
    t.add_argument("--out", required=True, type=Path)
    t.add_argument("--split", choices=("train", "heldout", "all"), default="train")
    t.add_argument("--limit", type=number(int, 1), default=20, help="questions traced per field (answered correctly)")
    t.add_argument(
        "--fields", type=field_list, default=FIELDS, help="comma-separated fields to trace (default: all six)"
    )
    t.add_argument(
        "--layers",
        type=layer_list,
        default=None,
        help="comma-separated layer indices whose sites are restored (default: every layer; a few layers "
        "cut the cost of a large model's trace by the same factor)",
    )
    t.add_argument(
        "--noise",
        type=number(float, 0, low_open=True),
        default=3.0,
        help="noise std in units of the embedding matrix's std (default 3, as Meng et al.)",
    )
    t.add_argument("--window", type=number(int, 1), default=1, help="layers restored at once for MLP/attention")
    t.add_argument("--seed", type=number(int, 0), default=0)
    t.add_argument("--batch-size", type=number(int, 1), default=64, help="interventions per forward call")
    t.add_argument("--device", default=None)
    pr = sub.add_parser(
        "probe", help="P- and Q-probes per layer x attribute, trained on train people, scored on heldout"
    )
    common(pr, "--model")
    pr.add_argument("--data", required=True, type=Path, help="the generated data the model trained on")
    pr.add_argument("--out", required=True, type=Path)
    pr.add_argument("--variant", default="bioS", help="the biographies the P-probe reads (the first of a multi5 list)")
    pr.add_argument(
        "--seed", type=number(int, 0), default=0, help="the shuffled control's order and the untrained model"
    )
    pr.add_argument("--device", default=None)
    return parser


def _device(name: str | None) -> str:
    import torch

    return name or ("cuda" if torch.cuda.is_available() else "cpu")


def _base(args, tuned: str) -> str:
    base = args.base or adapter_base(tuned)
    if not base:
        raise LocalizeError(f"{tuned} is a full model: pass the model it was tuned from as --base")
    return base


def command(args) -> int:
    progress = not args.no_progress
    one_model = args.command in ("trace", "probe")
    tuned_arg = args.model if one_model else args.tuned
    base = _base(args, tuned_arg) if not one_model or adapter_base(tuned_arg) else None
    manifest = {k: str(v) for k, v in vars(args).items() if v is not None and k not in ("no_progress", "overwrite")}
    if args.command in ("graft", "prune"):
        if args.save_dir is None and (args.data is None or args.out is None):
            raise LocalizeError(f"{args.command} needs --data and --out (or --save DIR --fraction F for one model)")
        if args.save_dir is not None and args.fraction is None:
            raise LocalizeError("--save needs --fraction, e.g. --fraction 0.01")
    # Every input is checked before anything is written.
    if adapter_base(tuned_arg) is None:
        tuned_ckpt = Checkpoint(tuned_arg)
        if base is not None:
            paired_names(Checkpoint(base), tuned_ckpt)
    else:
        Checkpoint(base)
    if getattr(args, "data", None) is not None:
        read_manifest(args.data)  # a generated dataset, or one line that says what is wrong
    out = None if getattr(args, "save_dir", None) is not None else args.out
    if out is not None:
        check_out(out, args.command, args.overwrite)
    else:
        check_output_dir(args.save_dir, f"{GENERATOR} {args.command} model", args.overwrite)
    quiet_libraries()
    with ExitStack() as stack:
        # A merged adapter goes in a scratch folder beside the output, removed afterwards.
        work = existing_parent(out if out is not None else args.save_dir)
        tuned = stack.enter_context(tuned_folder(tuned_arg, base, work))
        if args.command == "diff":
            from engram_localize import diff

            result = diff.diff(Checkpoint(base), Checkpoint(tuned), args.thresholds, progress)
            with section(args.out, "diff", manifest, args.overwrite) as folder:
                diff.write(result, folder)
            print(f"{GENERATOR}: {args.out / 'diff' / 'diff.md'}")
        elif args.command in ("graft", "prune"):
            from engram_localize import graft, graft_report

            tokenizer = load_tokenizer(tuned_arg, tuned, base)
            if args.save_dir is not None:
                with atomic_output(args.save_dir, f"{GENERATOR} {args.command} model", args.overwrite) as folder:
                    n = graft.save(base, tuned, folder, args.fraction, args.scope, args.command, tokenizer)
                    write_json(
                        folder / "manifest.json",
                        {"generator": f"{GENERATOR} {args.command} model", "chosen": n, **manifest},
                    )
                print(
                    f"{GENERATOR}: wrote {args.save_dir} ({n:,} weights from the {'tuned' if args.command == 'graft' else 'base'} model)"
                )
                return 0
            result = graft.curve(
                args.command,
                base,
                tuned,
                args.data,
                args.fractions,
                args.scope,
                args.limit,
                _device(args.device),
                args.batch_size,
                tokenizer,
                progress,
            )
            with section(args.out, args.command, manifest, args.overwrite) as folder:
                graft_report.write(result, folder)
            print(f"{GENERATOR}: {args.out / args.command / (args.command + '.md')}")
        elif args.command == "probe":
            probe_command(args, tuned, tuned_arg, progress)
        else:
            from engram_localize import trace, trace_report

            model = load_model(tuned, _device(args.device))
            tokenizer = load_tokenizer(tuned_arg, tuned)
            tracer = trace.Tracer(model, tokenizer, args.noise, args.window, args.seed, args.batch_size, args.layers)
            result = trace_report.trace_data(
                tracer, args.data, tokenizer, args.split, args.limit, progress, args.fields
            )
            with section(args.out, "trace", manifest, args.overwrite) as folder:
                trace_report.write(result, folder, tuned_arg)
            print(f"{GENERATOR}: {args.out / 'trace' / 'trace.md'}")
    return 0


def probe_command(args, tuned: Path, tuned_arg: str, progress: bool) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from engram_data.contract import PEOPLE, read_jsonl
    from engram_localize import probe, probe_report

    people = read_jsonl(args.data / PEOPLE)
    model = load_model(tuned, _device(args.device))
    tokenizer = load_tokenizer(tuned_arg, tuned)
    trained = probe.features(model, tokenizer, people, args.variant, progress=progress)
    torch.manual_seed(args.seed)  # the untrained floor: the same architecture, random weights
    untrained = AutoModelForCausalLM.from_config(model.config).to(model.device).eval()
    floor = probe.features(untrained, tokenizer, people, args.variant, progress=progress)
    rows = probe.probe_table(trained, floor, args.seed, progress)
    with section(
        args.out, "probe", {k: str(v) for k, v in vars(args).items() if v is not None}, args.overwrite
    ) as folder:
        probe_report.write(rows, folder, tuned_arg)
    print(f"{GENERATOR}: {args.out / 'probe' / 'probe.md'}")


def quiet_libraries() -> None:
    """No import-time noise (torchao's missing CUDA kernels, torch's pytree notices) and no
    weight-loading bars: this tool's own progress bars are the ones that matter."""
    import logging

    logging.disable(logging.WARNING)
    try:  # what transformers imports when torchao is present, on the first model load
        import torchao  # noqa: F401
        import torchao.prototype.mx_formats  # noqa: F401
    except Exception:
        pass
    finally:
        logging.disable(logging.NOTSET)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(GENERATOR, lambda: command(args), (LocalizeError, DataError))


if __name__ == "__main__":
    sys.exit(main())
