"""Record what a generator writes for the documents prompt, raw, to a JSONL file: the suite's
fixture of the real model's replies (``tests/fixtures/smollm2_replies.jsonl``) and a quick look
at what any generator makes of the prompt before a paid-for run.

    python -m engram_data.documents.record --generator hf:models/smollm2-135m \\
        --out tests/fixtures/smollm2_replies.jsonl

Every reply is asked with the pipeline's own prompt, token cap and seed (per request, from its
key), for fixed passages (two bioS biographies and a drug leaflet),
each style, three temperatures and both prompts; each line holds the request and the reply
with its finish reason, nothing parsed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engram_data.documents.chunks import Chunk
from engram_data.documents.qa import PROMPTS, STYLES, build_prompt, reply_budget

TEMPERATURES = (0.01, 0.6, 1.2)
LEAFLET = (
    "Aspirin is a nonsteroidal anti-inflammatory drug. It was first synthesized by Felix Hoffmann in 1897. "
    "The usual adult dose for pain is 325 to 650 milligrams every four hours. "
    "It should not be given to children with viral infections because of Reye syndrome."
)


# Two biographies of the bioS population of seed 0 (generate_data.py --num-people 2 --seed 0),
# as they were when the fixture was recorded, and the leaflet.
BIOGRAPHIES = (
    (
        "person-0.txt",
        "Glenn Devon Clarke's birth date is February 18, 2054. His parents raised him in Oakland, CA. He was a "
        "student at Queens College. He devoted his academic career to Genetics. He contributed his skills to "
        "Applied Materials. His office was in Santa Clara, CA.",
    ),
    (
        "person-1.txt",
        "Tina Sierra Cardenas was born on April 18, 1932, a day her family still celebrates. She was brought up "
        "in Elizabeth, NJ. She dedicated her college years to learning at Temple University. She specialized in "
        "Applied Mathematics. She contributed to the success of JetBlue. She spent her professional years in "
        "New York, NY.",
    ),
)


def passages() -> list[tuple[str, str]]:
    """(source name, text): the two biographies and the leaflet."""
    return [*BIOGRAPHIES, ("aspirin.md", LEAFLET)]


def requests(pairs: int = 3) -> list[dict]:
    out = []
    for prompt in PROMPTS:
        for source, text in passages():
            chunk = Chunk(id=source, source=source, start=0, end=len(text), text=text, num_tokens=0)
            for style in STYLES:
                for t in TEMPERATURES:
                    out.append(
                        {
                            "prompt_kind": prompt,
                            "source": source,
                            "passage": text,
                            "style": style,
                            "temperature": t,
                            "prompt": build_prompt(chunk, style, pairs, prompt),
                            "max_tokens": reply_budget(style, pairs),
                        }
                    )
    for i, r in enumerate(out):
        r["seed"] = i
    return out


def main(argv: list[str] | None = None) -> int:
    from engram_data.documents.generators import make_generator

    p = argparse.ArgumentParser(prog="python -m engram_data.documents.record", description=__doc__.split("\n\n")[0])
    p.add_argument("--generator", required=True, help="hf:PATH or openai:URL")
    p.add_argument("--model", default=None, help="model name for openai: endpoints")
    p.add_argument("--out", required=True, help="JSONL file to write (replaced)")
    args = p.parse_args(argv)
    gen = make_generator(args.generator, args.model)
    rows = requests()
    replies: dict[int, tuple[str, str]] = {}
    for t in TEMPERATURES:
        todo = [i for i, r in enumerate(rows) if r["temperature"] == t]

        def keep(j, text, finish="stop", todo=todo):
            replies[todo[j]] = (text, finish)
            print(f"{len(replies)}/{len(rows)} replies", file=sys.stderr, end="\r")

        gen.generate(
            [rows[i]["prompt"] for i in todo],
            t,
            [rows[i]["seed"] for i in todo],
            keep,
            max_tokens=[rows[i]["max_tokens"] for i in todo],
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w") as f:
        for i, r in enumerate(rows):
            reply, finish = replies[i]
            f.write(json.dumps({**r, "generator": gen.spec, "reply": reply, "finish": finish}) + "\n")
    tmp.replace(out)
    print(f"wrote {len(rows)} replies to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
