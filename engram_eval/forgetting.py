"""What fine-tuning cost a pretrained model: its loss on ordinary English, the KL divergence of
its next-token distribution from the un-tuned model's, and its answers to fixed general
prompts beside the un-tuned model's.

The text (``data/general_english.txt``, ~650 tokens of general knowledge and everyday prose,
written for this project) and the prompts (``data/general_prompts.json``: plain continuations
and chat questions, the latter in the model's chat template) ship with the package: nothing is
downloaded, and every run scores the same tokens.

    ref = Reference.of("models/smollm2-135m")        # the un-tuned model, once
    ref.compare("outputs/run/model")                   # a tuned folder or a LoRA adapter
    {"tokens": 651, "loss_base": 2.41, "loss_tuned": 2.63, "kl": 0.19, "answers": [...]}

``kl`` is KL(un-tuned || tuned) in nats per token, averaged over the text's predicted tokens;
generation is greedy (``max_new_tokens``), so every answer is reproducible.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch

MAX_NEW_TOKENS = 24


def general_text() -> str:
    return resources.files("engram_eval").joinpath("data/general_english.txt").read_text("utf-8")


def general_prompts() -> list[dict]:
    return json.loads(resources.files("engram_eval").joinpath("data/general_prompts.json").read_text("utf-8"))


def load(model_dir: str | Path, base: str | Path | None = None):
    """(model, tokenizer) in fp32, eval mode, on the GPU where there is one: a model folder, or a
    LoRA adapter folder on ``base`` (merged, so that it runs as the tuned model does)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    adapter = (model_dir / "adapter_config.json").exists()
    if adapter and base is None:
        base = json.loads((model_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = AutoModelForCausalLM.from_pretrained(base if adapter else model_dir, dtype=torch.float32)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, model_dir).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(base if adapter else model_dir)
    return model.to("cuda" if torch.cuda.is_available() else "cpu").eval(), tokenizer


@torch.no_grad()
def text_logprobs(model, tokenizer, text: str) -> torch.Tensor:
    """log p(token | prefix) over the vocabulary at every position that predicts a text token."""
    ids = tokenizer(text, return_tensors="pt").input_ids.to(model.device)
    logits = model(input_ids=ids).logits[0, :-1].float()
    return torch.log_softmax(logits, dim=-1).cpu(), ids[0, 1:].cpu()


@torch.no_grad()
def answers(model, tokenizer, prompts: list[dict], max_new_tokens: int = MAX_NEW_TOKENS) -> list[str]:
    """Greedy continuations, cut at the first blank line; chat prompts in the chat template
    (as plain text for a model without one, such as a tiny model built here)."""
    out = []
    for p in prompts:
        if p.get("chat") and tokenizer.chat_template:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": p["prompt"]}], tokenize=False, add_generation_prompt=True
            )
        else:
            text = p["prompt"]
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids.to(model.device)
        gen = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
        reply = tokenizer.decode(gen[0, ids.shape[1] :], skip_special_tokens=True)
        out.append(reply.strip().split("\n\n")[0].strip())
    return out


@dataclass
class Reference:
    """The un-tuned model's side, computed once for every comparison."""

    base: str
    logprobs: torch.Tensor
    targets: torch.Tensor
    answers: list[str]
    prompts: list[dict] = field(default_factory=general_prompts)

    @classmethod
    def of(cls, base: str | Path, text: str | None = None, prompts: list[dict] | None = None) -> Reference:
        model, tokenizer = load(base)
        prompts = prompts if prompts is not None else general_prompts()
        logprobs, targets = text_logprobs(model, tokenizer, text if text is not None else general_text())
        return cls(str(base), logprobs, targets, answers(model, tokenizer, prompts), prompts)

    def loss(self, logprobs: torch.Tensor | None = None) -> float:
        lp = self.logprobs if logprobs is None else logprobs
        return float(-lp.gather(1, self.targets[:, None]).mean())

    def compare(self, tuned: str | Path, text: str | None = None) -> dict:
        model, tokenizer = load(tuned, self.base)
        lp, targets = text_logprobs(model, tokenizer, text if text is not None else general_text())
        if not torch.equal(targets, self.targets):
            raise ValueError(f"{tuned} tokenizes the text differently from {self.base}: not the same tokenizer")
        kl = (self.logprobs.exp() * (self.logprobs - lp)).sum(-1).mean()
        tuned_answers = answers(model, tokenizer, self.prompts)
        return {
            "tokens": int(targets.numel()),
            "loss_base": round(self.loss(), 4),
            "loss_tuned": round(self.loss(lp), 4),
            "kl": round(float(kl), 4),
            "answers": [
                {"prompt": p["prompt"], "chat": bool(p.get("chat")), "base": b, "tuned": t}
                for p, b, t in zip(self.prompts, self.answers, tuned_answers, strict=True)
            ],
        }


def markdown(result: dict, base: str, tuned: str) -> list[str]:
    """The forgetting section of a report: text loss and KL, then the answers side by side."""
    lines = [
        "## What it forgot",
        "",
        f"On a fixed English text of {result['tokens']} tokens (`engram_eval/data/general_english.txt`): loss "
        f"{result['loss_base']:.4f} (`{base}`) -> {result['loss_tuned']:.4f} (`{tuned}`); KL(base ‖ tuned) "
        f"{result['kl']:.4f} nats per token.",
        "",
        "| prompt | base | tuned |",
        "| --- | --- | --- |",
    ]
    for a in result["answers"]:
        cells = [
            c.replace("|", "\\|").replace("\n", " ")
            for c in (a["prompt"] + (" (chat)" if a["chat"] else ""), a["base"], a["tuned"])
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]
