"""``engram-capacity``: the bits a trained model stores, by either measure, from the command line.

``--measure bound`` (default) is Physics of LM 3.3's bit-complexity lower bound
(:mod:`engram_eval.capacity_bound`); ``--measure qa`` the bits extractable through QA prompts
(:mod:`engram_eval.capacity_qa`). ``--out DIR`` writes capacity.json and capacity.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from engram_data.atomic import atomic_output
from engram_data.contract import DataError, read_manifest
from engram_data.errors import OneLineParser, number, run_cli
from engram_eval.capacity_qa import CapacityEvaluator, markdown


def main(argv: Sequence[str] | None = None) -> int:
    """``engram-capacity --model M --data D [--split train|heldout|all] [--out DIR]``."""
    parser = OneLineParser(prog="engram-capacity", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model folder (or Hub name)")
    parser.add_argument("--data", required=True, type=Path, help="the generated dataset it learned")
    parser.add_argument("--split", choices=("train", "heldout", "all"), default="train")
    parser.add_argument("--limit", type=number(int, 1), help="the first N people of the split")
    parser.add_argument("--batch-size", type=number(int, 1), default=4)
    parser.add_argument("--no-names", action="store_true", help="qa: skip the names (the slowest: three long pools)")
    parser.add_argument(
        "--measure",
        choices=("bound", "qa"),
        default="bound",
        help="bound: Physics of LM 3.3's bit-complexity lower bound from the losses inside the "
        "biographies (default); qa: bits extractable through QA prompts",
    )
    parser.add_argument("--variant", default="bioS", help="bound: the biographies scored (default: bioS)")
    parser.add_argument("--out", type=Path, help="write capacity.json and capacity.md here")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    def body() -> int:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        read_manifest(args.data)
        try:
            tok = AutoTokenizer.from_pretrained(args.model)
            model = AutoModelForCausalLM.from_pretrained(args.model, dtype="auto")
        except Exception as exc:  # transformers raises OSError, ValueError, ...
            raise DataError(
                f"cannot load a model from {args.model} ({type(exc).__name__}); pass a model folder"
            ) from None
        model.to("cuda" if torch.cuda.is_available() else "cpu")
        if args.measure == "bound":
            from engram_eval.capacity_bound import BoundEvaluator, bound_markdown

            result = BoundEvaluator(args.data, tok, args.variant, args.limit, args.batch_size).evaluate(model)
            text = bound_markdown(result, args.model, args.variant)
        else:
            result = CapacityEvaluator(args.data, tok, args.split, args.limit, args.batch_size, not args.no_names)
            result = result.evaluate(model)
            text = markdown(result, args.model, args.split)
        if args.out:
            with atomic_output(args.out, "engram-capacity", args.overwrite) as tmp:
                (tmp / "capacity.json").write_text(json.dumps(result, indent=2) + "\n")
                (tmp / "capacity.md").write_text(text)
                (tmp / "manifest.json").write_text(
                    json.dumps({"generator": "engram-capacity", **{k: str(v) for k, v in vars(args).items()}})
                )
        print(text)
        return 0

    return run_cli(parser.prog, body, (DataError,))


if __name__ == "__main__":
    raise SystemExit(main())
