"""``engram-localize probe``: where the model keeps a person's attributes, by linear probes on
its frozen hidden states (Physics of LM 3.1, Allen-Zhu and Li, arXiv:2309.14316, section 5).

- **P-probe**: the person's biography goes in; at the last token of the name's first mention
  (``name``), and at the token just before each attribute's value (``before <field>``), one
  linear classifier per layer x attribute is trained on the hidden state.
- **Q-probe**: the name alone goes in; the probe reads its last token (``name``), and, as the
  paper runs it, the name followed by the tokenizer's end token, read at that token
  (``name + end``; where the tokenizer has one).

Each probe is a linear classifier (scikit-learn's ``RidgeClassifier`` on standardized features:
one-vs-rest least squares with an L2 penalty, solved in closed form, so exact and fast) trained on the **train** people's hidden states and scored on the **heldout**
people's: can a linear map read the attribute off people it never saw labelled? A heldout
person is scored where their value occurs among train people (a probe can only name classes
it saw; the count is reported), so a population with few values per field
(``generate_data.py --values-per-field``) is the probe's regime, as the paper's 100k people
over a few hundred values are.

Floors, measured on the same people: ``majority`` (always the most frequent train value),
``shuffled`` (the probe trained on train labels in a seeded random order: a probe that can
only memorize individual people: chance in expectation; where the features hold the class, it
learns one random mapping of the classes, so it varies more from field to field) and ``untrained`` (the probe on a random model of the same architecture).
Context before a position is information too: ``before company_city`` follows the employer's
name in the text, so even an untrained model's probe may read the company city there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engram_data.contract import FIELDS, MULTI_VARIANTS
from engram_localize.checkpoints import LocalizeError

NAME = "name"
NAME_END = "name + end"  # the Q-probe's input as the paper's: the name, then the end-of-text token
RIDGE_ALPHA = 10.0  # the probe's L2 penalty on standardized features (closed form: exact and fast)
PROBES = ("P", "Q")


def positions(tokenizer, text: str, name: str, values: dict[str, str]) -> dict[str, int]:
    """Token positions in ``text``: the name's last token, and the token before each value."""
    offsets = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]

    def token_at(char: int) -> int:
        for i, (a, b) in enumerate(offsets):
            if b > a and b > char:
                return i
        raise LocalizeError(f"character {char} of a biography is past its tokens; use a fast tokenizer")

    start = text.find(name)
    if start < 0:
        raise LocalizeError(f"a biography does not name its person {name!r}; regenerate the data")
    out = {NAME: token_at(start + len(name) - 1)}
    for field in FIELDS:
        at = text.find(values[field])
        if at < 0:
            raise LocalizeError(f"{name}'s biography does not state its {field}; regenerate the data")
        first = token_at(at)
        if first == 0:
            raise LocalizeError(f"{name}'s biography opens with its {field}; probe a subject-first variant")
        out[f"before {field}"] = first - 1
    return out


@dataclass
class Features:
    """Hidden states per site: ``sites[(probe, position)]`` is [people, layers + 1, hidden]."""

    sites: dict[tuple[str, str], np.ndarray]
    people: list[dict]


def biography(person: dict, variant: str) -> str:
    text = person.get(variant)
    if text is None:
        raise LocalizeError(f"the data has no {variant} texts; pass --variant with one it has")
    return text[0] if variant in MULTI_VARIANTS else text


def features(
    model, tokenizer, people: list[dict], variant: str, batch_size: int = 32, progress: bool = True
) -> Features:
    import torch
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    sites: dict[tuple[str, str], list] = {}

    def hidden(texts: list[str], end: bool = False) -> list[np.ndarray]:
        """[layers + 1, tokens, hidden] per text (``end``: followed by the end-of-text token).
        Padding goes on the right, where a causal model's earlier positions never see it."""
        encoded = [tokenizer(text)["input_ids"] + ([tokenizer.eos_token_id] if end else []) for text in texts]
        width = max(len(e) for e in encoded)
        ids = torch.tensor([e + [0] * (width - len(e)) for e in encoded], device=device)
        mask = torch.tensor([[1] * len(e) + [0] * (width - len(e)) for e in encoded], device=device)
        with torch.no_grad():
            states = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        stacked = torch.stack(states, dim=1).float().cpu().numpy()  # [batch, layers + 1, tokens, hidden]
        return [stacked[i, :, : len(e)] for i, e in enumerate(encoded)]

    for start in tqdm(range(0, len(people), batch_size), desc="probe features", unit="batch", disable=not progress):
        batch = people[start : start + batch_size]
        bios = [biography(p, variant) for p in batch]
        for p, text, h in zip(batch, bios, hidden(bios)):
            for pos, index in positions(tokenizer, text, p["name"], {f: p[f] for f in FIELDS}).items():
                sites.setdefault(("P", pos), []).append(h[:, index])
        names = [p["name"] for p in batch]
        for h in hidden(names):
            sites.setdefault(("Q", NAME), []).append(h[:, -1])
        if tokenizer.eos_token_id is not None:
            for h in hidden(names, end=True):
                sites.setdefault(("Q", NAME_END), []).append(h[:, -1])
    return Features({k: np.stack(v) for k, v in sites.items()}, people)


def fit_score(x_train: np.ndarray, y_train: list[str], x_test: np.ndarray, y_test: list[str]) -> float:
    """Accuracy on the test rows whose label the train rows have (nan if there are none)."""
    from sklearn.linear_model import RidgeClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    known = set(y_train)
    keep = [i for i, y in enumerate(y_test) if y in known]
    if not keep:
        return float("nan")
    if len(known) == 1:
        return 1.0  # one class: every prediction is it
    probe = make_pipeline(StandardScaler(), RidgeClassifier(alpha=RIDGE_ALPHA))
    probe.fit(x_train, y_train)
    predicted = probe.predict(x_test[keep])
    return float(np.mean([p == y_test[i] for p, i in zip(predicted, keep)]))


def probe_table(trained: Features, untrained: Features | None, seed: int = 0, progress: bool = True) -> list[dict]:
    """One row per probe x position x layer x field: accuracy on heldout people and its floors."""
    from tqdm.auto import tqdm

    people = trained.people
    train = [i for i, p in enumerate(people) if p["split"] == "train"]
    test = [i for i, p in enumerate(people) if p["split"] == "heldout"]
    if not train or not test:
        raise LocalizeError("probing needs train and heldout people; generate data with --heldout-fraction 0.5")
    rng = np.random.default_rng(seed)
    rows = []
    jobs = [
        (site, layer, field) for site, x in trained.sites.items() for layer in range(x.shape[1]) for field in FIELDS
    ]
    for (probe, position), layer, field in tqdm(jobs, desc="probes", unit="probe", disable=not progress):
        y = [p[field] for p in people]
        y_train, y_test = [y[i] for i in train], [y[i] for i in test]
        x = trained.sites[(probe, position)][:, layer]
        counts = {v: y_train.count(v) for v in set(y_train)}
        majority = max(sorted(counts), key=counts.get)
        scored = [v for v in y_test if v in counts]
        shuffled = list(rng.permutation(np.array(y_train, dtype=object)))
        row = {
            "probe": probe,
            "position": position,
            "layer": layer,
            "field": field,
            "accuracy": fit_score(x[train], y_train, x[test], y_test),
            "shuffled": fit_score(x[train], shuffled, x[test], y_test),
            "untrained": (
                fit_score(
                    untrained.sites[(probe, position)][train, layer],
                    y_train,
                    untrained.sites[(probe, position)][test, layer],
                    y_test,
                )
                if untrained is not None
                else float("nan")
            ),
            "majority": float(np.mean([v == majority for v in scored])) if scored else float("nan"),
            "classes": len(counts),
            "train_people": len(train),
            "scored": len(scored),
            "heldout_people": len(test),
        }
        rows.append(row)
    return rows
