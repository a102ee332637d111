"""``engram-localize trace``: causal tracing (Meng et al., "Locating and Editing Factual
Associations in GPT", 2022) at the subject's tokens of the QA questions.

For each question the model answers correctly: a clean run; a corrupted run, Gaussian
noise (``noise`` × the standard deviation of the input embedding matrix, seeded per
question) added to the embeddings of the person's name; then corrupted runs that restore
one site to its clean value: one layer's output (the hidden state), or the MLP's or the
attention's output in a window of layers around it, at one token position. The measure is
the probability of the correct option among the four (softmax of their summed
log-likelihoods, as the accuracy scores them). Positions are pooled per question into
five kinds (question before the subject, subject tokens but the last, the last subject
token, question after the subject, the last token) and averaged over questions, per field.

The interventions run through nnsight (``NNsight`` wraps any torch module, so every
supported architecture works as loaded by transformers, with no weight conversion or
per-architecture hook code); many interventions share one batched forward call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from engram_data.contract import FIELDS, PEOPLE, qa_prompt, read_jsonl, read_qa_file
from engram_localize.checkpoints import LocalizeError

KINDS = ("hidden", "mlp", "attn")
CATEGORIES = ("before subject", "subject", "last subject", "after subject", "last token")
_ATTENTION = ("self_attn", "attn", "attention")


@dataclass(frozen=True)
class Prompt:
    field: str
    question_id: str
    context: list[int]
    options: tuple[list[int], ...]
    label: int
    subject: tuple[int, int]  # token positions [start, end) of the name in the context

    def categories(self) -> list[int]:
        """Each context position's kind, an index into CATEGORIES."""
        s0, s1, last = *self.subject, len(self.context) - 1
        return [
            4 if p == last else 0 if p < s0 else 1 if p < s1 - 1 else 2 if p == s1 - 1 else 3
            for p in range(len(self.context))
        ]


def make_prompt(tokenizer, row: dict, name: str) -> Prompt:
    from engram_eval.recall import encode_pair

    context = qa_prompt(row["question"])
    pairs = [encode_pair(tokenizer, context, " " + c) for c in row["choices"]]
    enc = tokenizer(context, return_offsets_mapping=True)
    if enc["input_ids"] != pairs[0][0]:
        raise LocalizeError("the tokenizer's offsets do not match its encoding; use a fast tokenizer (tokenizer.json)")
    start = context.find(name)
    if start < 0:
        raise LocalizeError(f"question {row['id']} does not name its person {name!r}; regenerate the data")
    end = start + len(name)
    inside = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a < end and b > start]
    return Prompt(
        row["field"], row["id"], pairs[0][0], tuple(p[1] for p in pairs), row["label"], (inside[0], inside[-1] + 1)
    )


def import_nnsight():
    """nnsight, without its ``.save()`` on every object of the process (it mounts one at
    import): other code's ``hasattr(x, "save")`` (argparse's defaults among them) stays true
    to the object. Values are saved with ``nnsight.save(value)``."""
    import nnsight

    try:
        from nnsight._c import unmount

        if unmount is not None and hasattr(object(), "save"):  # mounted once per process
            unmount("save")
    except ImportError:
        pass
    return nnsight


def _path_of(model: nn.Module, target: nn.Module) -> str:
    return next(name for name, module in model.named_modules() if module is target)


class Tracer:
    """Clean, corrupted and restored runs of one model; ``window`` layers for MLP/attention."""

    def __init__(
        self,
        model,
        tokenizer,
        noise: float = 3.0,
        window: int = 1,
        seed: int = 0,
        batch_size: int = 64,
        layers: list[int] | None = None,
    ):
        nnsight = import_nnsight()

        self.model, self.tokenizer, self.window, self.seed, self.batch_size = model, tokenizer, window, seed, batch_size
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        n = model.config.num_hidden_layers
        lists = [name for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) == n]
        if not lists:
            raise LocalizeError(f"cannot find the {n} layers of {type(model).__name__}")
        self.layers_path, self.n_layers = min(lists, key=len), n
        bad = [i for i in layers or () if not 0 <= i < n]
        if bad:
            raise LocalizeError(f"--layers {','.join(map(str, bad))}: the model has layers 0 to {n - 1}")
        self.traced = sorted(set(layers)) if layers else list(range(n))  # the layers whose sites are restored
        first = model.get_submodule(self.layers_path)[0]
        self.attn_name = next((a for a in _ATTENTION if hasattr(first, a)), None)
        if self.attn_name is None or not hasattr(first, "mlp"):
            raise LocalizeError(f"cannot find the attention and MLP of {type(first).__name__}")
        self.embed_path = _path_of(model, model.get_input_embeddings())
        self.scale = noise * float(model.get_input_embeddings().weight.detach().float().std())
        self.nn = nnsight.NNsight(model)
        self._save = nnsight.save
        self.device = next(model.parameters()).device

    def _envoy(self, path: str):
        envoy = self.nn
        for part in path.split("."):
            envoy = envoy[int(part)] if part.isdigit() else getattr(envoy, part)
        return envoy

    def noise(self, prompt: Prompt, index: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        shape = (prompt.subject[1] - prompt.subject[0], self.model.config.hidden_size)
        return (torch.randn(shape, generator=gen) * self.scale).to(self.device, self.model.dtype)

    def _inputs(self, prompt: Prompt, repeat: int) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = [prompt.context + opt for opt in prompt.options]
        width = max(map(len, seqs))
        ids = torch.tensor([s + [self.pad] * (width - len(s)) for s in seqs], device=self.device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=self.device)
        return ids.repeat(repeat, 1), mask.repeat(repeat, 1)

    def _probs(self, logits: torch.Tensor, prompt: Prompt) -> torch.Tensor:
        """Each option's probability among the options (interventions × options)."""
        n_opt, n_ctx = len(prompt.options), len(prompt.context)
        logp = torch.log_softmax(logits.float(), dim=-1).view(-1, n_opt, *logits.shape[1:])
        scores = torch.stack(
            [
                logp[:, o, n_ctx - 1 + torch.arange(len(opt)), torch.tensor(opt)].sum(-1)
                for o, opt in enumerate(prompt.options)
            ],
            dim=1,
        )
        return torch.softmax(scores.double(), dim=-1)

    def _site(self, layer: int, kind: str):
        block = self._envoy(self.layers_path)[layer]
        envoy = block if kind == "hidden" else getattr(block, "mlp" if kind == "mlp" else self.attn_name)
        return envoy.output

    @torch.no_grad()
    def clean(self, prompt: Prompt) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
        """The options' clean probabilities and every site's clean output, per kind and layer."""
        ids, mask = self._inputs(prompt, 1)
        saved: dict[str, list] = {k: [] for k in KINDS}
        with self.nn.trace(input_ids=ids, attention_mask=mask):
            for layer in range(self.n_layers):
                for kind in ("attn", "mlp", "hidden"):  # the order they run in
                    out = self._site(layer, kind)
                    saved[kind].append(self._save((out[0] if isinstance(out, tuple) else out).clone()))
            logits = self._save(self.nn.output.logits)
        return self._probs(logits, prompt)[0], saved

    @torch.no_grad()
    def run(
        self,
        prompt: Prompt,
        noise: torch.Tensor | None,
        restore: list[dict],
        kind: str,
        clean: dict[str, list[torch.Tensor]],
    ) -> torch.Tensor:
        """The correct option's probability for each intervention in ``restore``: a dict
        {layer: positions (a list, or None for every position)} of sites of ``kind`` set to
        their clean value, in a run whose subject embeddings get ``noise`` (None: no noise)."""
        n_opt = len(prompt.options)
        ids, mask = self._inputs(prompt, len(restore))
        plan: dict[int, tuple[list, list, list]] = {}
        for i, sites in enumerate(restore):
            for layer, positions in sites.items():
                whole, rows, pos = plan.setdefault(layer, ([], [], []))
                for o in range(n_opt):
                    if positions is None:
                        whole.append(i * n_opt + o)
                    else:
                        rows += [i * n_opt + o] * len(positions)
                        pos += list(positions)
        s0, s1 = prompt.subject
        with self.nn.trace(input_ids=ids, attention_mask=mask):
            if noise is not None:
                self._envoy(self.embed_path).output[:, s0:s1] += noise
            for layer in sorted(plan):
                whole, rows, pos = (torch.tensor(x, dtype=torch.long, device=self.device) for x in plan[layer])
                out = self._site(layer, kind)
                site, source = (out[0] if isinstance(out, tuple) else out), clean[kind][layer]
                if len(whole):
                    site[whole] = source[whole % n_opt]
                if len(rows):
                    site[rows, pos] = source[rows % n_opt, pos]
            logits = self._save(self.nn.output.logits)
        return self._probs(logits, prompt)[:, prompt.label]

    def window_of(self, layer: int, kind: str) -> range:
        if kind == "hidden" or self.window <= 1:
            return range(layer, layer + 1)
        return range(max(0, layer - self.window // 2), min(self.n_layers, layer - (-self.window // 2)))

    def trace(self, prompt: Prompt, index: int) -> dict | None:
        """Clean, corrupted and restored probabilities (per kind: layers × context positions);
        None when the model does not answer the question correctly."""
        probs, clean = self.clean(prompt)
        if int(probs.argmax()) != prompt.label:
            return None
        p_clean = float(probs[prompt.label])
        noise = self.noise(prompt, index)
        p_corrupt = float(self.run(prompt, noise, [{}], "hidden", clean)[0])
        sites = [(layer, p) for layer in self.traced for p in range(len(prompt.context))]
        restored = {}
        for kind in KINDS:
            values = []
            for i in range(0, len(sites), self.batch_size):
                chunk = [{w: [p] for w in self.window_of(layer, kind)} for layer, p in sites[i : i + self.batch_size]]
                values.append(self.run(prompt, noise, chunk, kind, clean))
            restored[kind] = torch.cat(values).view(len(self.traced), len(prompt.context))
        return {"clean": p_clean, "corrupted": p_corrupt, "restored": restored}


def prompts(data, tokenizer, split: str = "train", fields=FIELDS) -> dict[str, list[tuple[dict, Prompt]]]:
    """Every question of ``split`` (train, heldout or all) per field, in file order."""
    names = {p["id"]: p["name"] for p in read_jsonl(f"{data}/{PEOPLE}")}
    out = {}
    for field in fields:
        rows = [r for r in read_qa_file(data, field) if split == "all" or r["split"] == split]
        out[field] = [(r, make_prompt(tokenizer, r, names[r["person_id"]])) for r in rows]
    return out


def pooled(restored: torch.Tensor, prompt: Prompt) -> torch.Tensor:
    """layers × CATEGORIES: the mean over each kind of position (NaN where a prompt has none)."""
    cats = torch.tensor(prompt.categories())
    out = torch.full((restored.shape[0], len(CATEGORIES)), float("nan"), dtype=torch.float64)
    for c in range(len(CATEGORIES)):
        if (cats == c).any():
            out[:, c] = restored[:, cats == c].double().mean(-1)
    return out
