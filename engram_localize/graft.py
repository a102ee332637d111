"""``engram-localize graft`` and ``prune``: how few changed weights carry the memory.

graft: the base model plus the top fraction of changed weights (by |Δ|, engram_localize.select)
taken from the tuned model; prune, its mirror: the tuned model with those changes reverted
to base. Each point is scored with the recall evaluator (engram_eval.recall, the same
numbers as ``lm_eval --tasks bios_qa``) on trained people, held-out people and reverse
questions. A chosen weight is copied, never recomputed, so fraction 1 of graft is the
tuned model bit for bit and fraction 0 the base.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from engram_eval.recall import QUESTION_SETS, RecallEvaluator
from engram_localize.checkpoints import OUTSIDE, Checkpoint, LocalizeError, classify, load_model, paired_names
from engram_localize.select import cuts, groups_of, masks


def apply(model, base: Checkpoint, tuned: Checkpoint, names, group, cut, mode: str) -> dict[tuple, int]:
    """Write base/tuned weights into ``model`` as ``mode`` says; chosen weights per (layer, module)."""
    state = model.state_dict()  # tensors sharing the parameters' storage: copy_ writes the model
    missing = [n for n in names if n not in state]
    if missing:
        raise LocalizeError(f"the loaded model has no tensor {missing[0]}; is --base the model --tuned was tuned from?")
    chosen_per: dict[tuple, int] = {}
    with torch.no_grad():
        for name, b, t, chosen in masks(base, tuned, names, group, cut):
            value = torch.where(chosen, t, b) if mode == "graft" else torch.where(chosen, b, t)
            state[name].copy_(value.to(state[name].device))
            layer, module = classify(name)
            key = (OUTSIDE if layer is None else layer, module)
            chosen_per[key] = chosen_per.get(key, 0) + int(chosen.sum())
    return chosen_per


def _scores(evaluator: RecallEvaluator, model, device) -> dict:
    return evaluator.evaluate(model, device=torch.device(device))


def curve(
    mode: str,
    base_dir: Path,
    tuned_dir: Path,
    data: Path,
    fractions,
    scope: str = "global",
    limit: int | None = None,
    device: str = "cpu",
    batch_size: int = 32,
    tokenizer=None,
    progress: bool = True,
) -> dict:
    """Recall of ``mode`` (graft or prune) at every fraction, with the base and tuned models' own."""
    base, tuned = Checkpoint(base_dir), Checkpoint(tuned_dir)
    names = paired_names(base, tuned)
    group = groups_of(names, scope)
    bar = (lambda it, **kw: tqdm(it, unit="tensor", leave=False, **kw)) if progress else None
    plan = cuts(base, tuned, names, group, fractions, progress=bar)
    evaluator = RecallEvaluator(data, tokenizer, sets=QUESTION_SETS, limit=limit, batch_size=batch_size)
    reference = {}
    for side, folder in (("base", base.path), ("tuned", tuned.path)):
        model = load_model(folder, device)
        reference[side] = _scores(evaluator, model, device)
        del model
    n_changed = sum(c.n_changed for c in plan[fractions[0]].values())
    model = load_model(base.path, device)
    points = []
    for f in tqdm(fractions, desc=mode, unit="model", disable=not progress):
        chosen = apply(model, base, tuned, names, group, plan[f], mode)
        points.append(
            {
                "fraction": f,
                "chosen": sum(chosen.values()),
                "recall": _scores(evaluator, model, device),
                "chosen_by_group": [{"layer": k[0], "module": k[1], "chosen": v} for k, v in chosen.items() if v],
            }
        )
    return {
        "mode": mode,
        "base": str(base.path),
        "tuned": str(tuned.path),
        "data": str(data),
        "scope": scope,
        "fractions": list(fractions),
        "n_changed": n_changed,
        "limit": limit,
        "reference": reference,
        "points": points,
    }


def save(base_dir: Path, tuned_dir: Path, folder: Path, fraction: float, scope: str, mode: str, tokenizer) -> int:
    """Write the one grafted (or pruned) model at ``fraction`` into ``folder``; the count chosen."""
    base, tuned = Checkpoint(base_dir), Checkpoint(tuned_dir)
    names = paired_names(base, tuned)
    group = groups_of(names, scope)
    plan = cuts(base, tuned, names, group, [fraction])
    model = load_model(base.path)
    chosen = apply(model, base, tuned, names, group, plan[fraction], mode)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return sum(chosen.values())
