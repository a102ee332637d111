"""Checkpoints read tensor by tensor from their safetensors files, LoRA adapters merged for
the comparison, and what each tensor is: its layer and module type, for every supported
architecture (Llama, OLMo 2, GPT-2, GPT-J, GPT-NeoX).

Nothing here holds two models: a tensor pair is read (memory-mapped), used and dropped.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
ADAPTER_CONFIG = "adapter_config.json"
OUTSIDE = "outside layers"  # the layer of embeddings, the final norm and the head

# Module types inside a layer, in heatmap order; a fused projection keeps its own column.
MODULES = ("attn.q", "attn.k", "attn.v", "attn.qkv", "attn.o", "mlp.gate", "mlp.up", "mlp.down", "norm", "other")
OUTSIDE_MODULES = ("embed", "pos_embed", "norm", "head", "other")
_PREFIX = {"gpt2": "transformer", "gptj": "transformer", "gpt_neox": "gpt_neox"}  # else "model"
_HEAD = re.compile(r"(lm_head|embed_out)\.")
_LAYER = re.compile(r"\.(?:layers|h|blocks)\.(\d+)\.")
# (pattern on the tensor's name, module type): the first that matches wins.
_RULES = tuple(
    (re.compile(pattern), module)
    for pattern, module in (
        (r"norm|(^|\.)ln_", "norm"),  # input/post norms, OLMo 2's q_norm/k_norm, GPT-2's ln_1/ln_2/ln_f
        (r"\.(q_proj|query)\.", "attn.q"),
        (r"\.(k_proj|key)\.", "attn.k"),
        (r"\.(v_proj|value)\.", "attn.v"),
        (r"\.(c_attn|query_key_value|qkv_proj|Wqkv)\.", "attn.qkv"),
        (r"\.(o_proj|out_proj)\.|attn\.c_proj\.|attention\.dense\.", "attn.o"),
        (r"\.gate_proj\.", "mlp.gate"),
        (r"\.(up_proj|c_fc|fc_in|dense_h_to_4h)\.", "mlp.up"),
        (r"\.(down_proj|fc_out|dense_4h_to_h)\.|mlp\.c_proj\.", "mlp.down"),
        (r"(^|\.)(embed_tokens|wte|embed_in|word_embeddings)\.", "embed"),
        (r"(^|\.)(wpe|position_embeddings)\.", "pos_embed"),
        (r"(^|\.)(lm_head|embed_out)\.", "head"),
    )
)


class LocalizeError(Exception):
    """Bad input to engram-localize: one line naming the problem and the fix."""


def classify(name: str) -> tuple[int | None, str]:
    """``(layer, module type)`` of a tensor name; layer None for tensors outside the layers."""
    found = _LAYER.search(name)
    layer = int(found.group(1)) if found else None
    module = next((m for rule, m in _RULES if rule.search(name)), "other")
    if layer is not None and module not in MODULES:
        module = "other"
    if layer is None and module not in OUTSIDE_MODULES:
        module = "other"
    return layer, module


def natural_key(name: str) -> tuple:
    """Layer 2 before layer 10: the order tensors are streamed in, which also breaks ties."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def local_dir(name_or_path: str | Path) -> Path:
    """A local model folder, or a Hub model's files (safetensors and JSON only) fetched into the cache."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.exists():
        raise LocalizeError(f"{path} is a file; pass the folder a model was saved to")
    try:
        from huggingface_hub import snapshot_download

        allow = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]
        return Path(snapshot_download(str(name_or_path), allow_patterns=allow))
    except Exception as exc:  # offline, unknown repo, gated repo: all one answer
        raise LocalizeError(
            f"{name_or_path} is neither a local folder nor a Hub model this machine can fetch "
            f"({type(exc).__name__}); pass a local model folder"
        ) from None


class Checkpoint:
    """A saved model's tensors by name, each read on demand from its safetensors file."""

    def __init__(self, name_or_path: str | Path):
        from safetensors import safe_open

        self.path = local_dir(name_or_path)
        index = self.path / WEIGHTS_INDEX
        if index.exists():
            files = json.loads(index.read_text())["weight_map"]
        elif (self.path / WEIGHTS).exists():
            files = dict.fromkeys(safe_open(self.path / WEIGHTS, framework="pt").keys(), WEIGHTS)
        else:
            hint = (
                "pass the adapter folder as --tuned and its base as --base"
                if self.is_adapter
                else ("re-save it with save_pretrained (safetensors is the default)")
            )
            raise LocalizeError(f"{self.path} holds no {WEIGHTS} or {WEIGHTS_INDEX}; {hint}")
        # Hub checkpoints saved without the causal-LM wrapper (GPT-2's) lack the base model's
        # prefix ("h.0.attn..." for "transformer.h.0.attn..."): such names are given it.
        prefix = _PREFIX.get(self.model_type, "model")
        bare = not any(n.startswith(prefix + ".") for n in files)
        self._stored = {(f"{prefix}.{n}" if bare and not _HEAD.match(n) else n): n for n in files}
        self._files = {name: files[stored] for name, stored in self._stored.items()}
        self._handles: dict[str, object] = {}

    @property
    def model_type(self) -> str | None:
        config = self.path / "config.json"
        return json.loads(config.read_text()).get("model_type") if config.exists() else None

    @property
    def is_adapter(self) -> bool:
        return (self.path / ADAPTER_CONFIG).exists()

    def names(self) -> list[str]:
        return sorted(self._files, key=natural_key)

    def _handle(self, name: str):
        from safetensors import safe_open

        file = self._files[name]
        if file not in self._handles:
            self._handles[file] = safe_open(self.path / file, framework="pt")
        return self._handles[file]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._handle(name).get_slice(self._stored[name]).get_shape())

    def get(self, name: str) -> torch.Tensor:
        return self._handle(name).get_tensor(self._stored[name])


def paired_names(base: Checkpoint, tuned: Checkpoint) -> list[str]:
    """The tensor names both checkpoints hold, with equal shapes, in streaming order."""
    b, t = set(base.names()), set(tuned.names())
    if b != t:
        only = sorted(b ^ t, key=natural_key)[:3]
        raise LocalizeError(
            f"{base.path} and {tuned.path} hold different tensors (e.g. {', '.join(only)}); "
            "compare a model with a fine-tune of that same model"
        )
    names = tuned.names()
    for name in names:
        if base.shape(name) != tuned.shape(name):
            raise LocalizeError(
                f"{name} is {list(base.shape(name))} in {base.path} but {list(tuned.shape(name))} in {tuned.path} "
                "(a resized vocabulary?); compare checkpoints with the same shapes"
            )
    return names


def pairs(base: Checkpoint, tuned: Checkpoint, names: list[str]) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    for name in names:
        yield name, base.get(name), tuned.get(name)


def adapter_base(tuned: str | Path) -> str | None:
    """The base model an adapter folder names, if ``tuned`` is one."""
    config = Path(tuned) / ADAPTER_CONFIG
    return json.loads(config.read_text()).get("base_model_name_or_path") if config.exists() else None


def load_model(path: str | Path, device: str = "cpu"):
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
    except Exception as exc:
        raise LocalizeError(f"cannot load a causal LM from {path} ({type(exc).__name__}: {exc})") from None
    return model.to(device).eval()


def load_tokenizer(*folders: str | Path):
    """The tokenizer of the first folder that has one (the tuned model's, else its base's)."""
    from transformers import AutoTokenizer

    for folder in folders:
        if (Path(folder) / "tokenizer_config.json").exists():
            return AutoTokenizer.from_pretrained(folder)
    return AutoTokenizer.from_pretrained(folders[-1])


@contextmanager
def tuned_folder(tuned: str | Path, base: str | Path, workdir: Path) -> Iterator[Path]:
    """The tuned model's folder: ``tuned`` itself, or for a LoRA adapter, its base with the
    adapter merged by peft (``merge_and_unload``) and saved in a temporary folder under
    ``workdir``, removed afterwards."""
    if adapter_base(tuned) is None:
        yield local_dir(tuned)
        return
    from peft import PeftModel

    try:
        merged = PeftModel.from_pretrained(load_model(local_dir(base)), str(tuned)).merge_and_unload()
    except LocalizeError:
        raise
    except Exception as exc:
        raise LocalizeError(f"cannot merge the adapter {tuned} into {base} ({type(exc).__name__}: {exc})") from None
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".merged-", dir=workdir) as tmp:
        merged.save_pretrained(tmp)
        del merged
        yield Path(tmp)
