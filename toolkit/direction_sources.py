"""Directions from outside a user's activations: counterfactual word pairs, built-in data sets.

Reached through :meth:`Direction.counterfactual` and :meth:`Direction.from_dataset`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, get_args

import numpy as np
import torch

from .probes import probe_curve
from .tokens import single_token
from .types import Method

if TYPE_CHECKING:
    from .directions import Direction
    from .session import Session

DATASET_METHODS = get_args(Method)


def counterfactual(cls: type[Direction], session: Session, word_pairs,
                   name: str | None) -> Direction:
    """See :meth:`Direction.counterfactual`."""
    pairs = list(word_pairs.pairs if hasattr(word_pairs, "pairs") else word_pairs)
    if not pairs:
        raise ValueError("word_pairs is empty: pass pairs like [('king', 'queen'), ...]")
    ids, skipped = [], []
    for pair in pairs:
        if len(pair) != 2 or not all(isinstance(w, str) and w for w in pair):
            raise ValueError(f"each pair needs two words, got {pair!r}")
        tokens = [single_token(session.tokenizer, w.strip()) for w in pair]
        if None in tokens:
            skipped.append(tuple(pair))
        else:
            ids.append(tuple(tokens))
    if not ids:
        raise ValueError(f"none of the {len(pairs)} pairs are single tokens for this model's "
                         "tokenizer; use common words")
    gamma = session.parts.unembedding.detach()
    idx = torch.tensor(ids, device=gamma.device)
    causal = session.geometry.causal
    diffs = causal.transform_unembedding(gamma[idx[:, 1]] - gamma[idx[:, 0]])
    vector = diffs.mean(0) @ causal.unwhiten.to(diffs)  # back from the causal space
    label = name or getattr(word_pairs, "name", None) or f"{pairs[0][0]}->{pairs[0][1]}"
    return cls(label, vector, None, "counterfactual", space="unembedding",
               info={"pairs_used": len(ids), "pairs_skipped": skipped},
               model=getattr(session, "name", ""),
               fingerprint=getattr(session, "fingerprint", ""))


def from_dataset(cls: type[Direction], session: Session, dataset: str, layer: int,
                 method: Method, name: str | None) -> Direction:
    """See :meth:`Direction.from_dataset`."""
    from . import datasets

    if method not in DATASET_METHODS:
        raise ValueError(f"unknown method {method!r}; use mean_difference, probe or "
                         "pca_of_differences")
    session.check_layers(layer)
    data = datasets.load(dataset)
    if not hasattr(data, "labels"):
        raise ValueError(f"{dataset!r} is not a labelled data set")
    classes = list(dict.fromkeys(data.labels))
    if len(classes) != 2:
        raise ValueError(f"{dataset!r} has {len(classes)} classes; need two")
    acts = session.activations(list(data.texts))
    labels = np.asarray(data.labels)
    pos = acts.select(rows=np.flatnonzero(labels == classes[0]))
    neg = acts.select(rows=np.flatnonzero(labels == classes[1]))
    name = name or f"{dataset}@{layer}"
    if method == "mean_difference":
        d = cls.mean_difference(pos, neg, layer, name=name)
    elif method == "pca_of_differences":
        n = min(len(pos), len(neg))
        d = cls.pca_of_differences((pos.select(rows=slice(0, n)), neg.select(rows=slice(0, n))),
                                   layer, name=name)
    else:  # "probe"
        curve = probe_curve(acts.select([layer]), data.labels, groups=data.groups,
                            control=False)
        d = cls.from_probe(curve, layer, name=name)
        if d.info["positive"] != classes[0]:
            d = replace(d, vector=-d.vector)
    info = {**d.info, "dataset": dataset, "positive": classes[0], "negative": classes[1]}
    return replace(d, info=info)
