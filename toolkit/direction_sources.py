"""Builders of directions: from probes, activations, word pairs and built-in data sets.

Each takes the Direction class as ``cls`` (this module never imports it) and is reached
through the class methods :meth:`Direction.from_probe`, :meth:`Direction.mean_difference`,
:meth:`Direction.pca_of_differences`, :meth:`Direction.counterfactual` and
:meth:`Direction.from_dataset`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, get_args

import numpy as np
import torch

from . import datasets
from .model_ref import check_same_model
from .probes import probe_curve
from .tokens import word_token_ids
from .types import Method

if TYPE_CHECKING:
    from .activations import Activations
    from .directions import Direction
    from .probes import ProbeCurve
    from .session import Session

DATASET_METHODS = get_args(Method)


def from_probe(cls: type[Direction], curve: ProbeCurve, layer: int, name: str | None,
               cls_label=None) -> Direction:
    """See :meth:`Direction.from_probe`."""
    if curve.task != "classification":
        raise ValueError("from_probe needs a classification curve; use a regression's "
                         "weights directly via curve.weights")
    i = curve.index(layer)
    if len(curve.classes) == 2:
        vector, towards = curve.weights[i][0], curve.classes[1]
        away = curve.classes[0]
    else:
        if cls_label not in curve.classes:
            raise ValueError(f"pick one of the classes {list(curve.classes)} with cls_label=")
        vector, towards = curve.weights[i][curve.classes.index(cls_label)], cls_label
        away = "other classes"
    return cls(
        name=name or f"probe:{towards}@{layer}", vector=vector, layer=layer, method="probe",
        info={"positive": towards, "negative": away, "score": float(curve.scores[i]),
              "metric": curve.metric, "examples": len(curve.labels)},
        source=curve.source)


def mean_difference(cls: type[Direction], pos_acts: Activations, neg_acts: Activations,
                    layer: int, name: str | None) -> Direction:
    """See :meth:`Direction.mean_difference`."""
    check_same_model(neg_acts, pos_acts, what="the negative activations")
    pos, neg = pos_acts.layer(layer).float(), neg_acts.layer(layer).float()
    for kind, rows in (("positive", pos), ("negative", neg)):
        if len(rows) == 0:
            raise ValueError(f"the {kind} set is empty: a mean difference needs texts on "
                             "both sides")
    return cls(name=name or f"mean-diff@{layer}", vector=pos.mean(0) - neg.mean(0),
               layer=layer, method="mean_difference",
               info={"positive": len(pos), "negative": len(neg)},
               source=pos_acts.source or neg_acts.source)


def pca_of_differences(cls: type[Direction], pairs_acts, layer: int,
                       name: str | None) -> Direction:
    """See :meth:`Direction.pca_of_differences`."""
    if isinstance(pairs_acts, tuple):
        check_same_model(pairs_acts[1], pairs_acts[0], what="the negative activations")
        pos, neg = (a.layer(layer).float() for a in pairs_acts)
        source = pairs_acts[0].source or pairs_acts[1].source
    else:
        rows = pairs_acts.layer(layer).float()
        if len(rows) % 2:
            raise ValueError("alternating pairs need an even number of rows")
        pos, neg = rows[0::2], rows[1::2]
        source = pairs_acts.source
    if pos.shape != neg.shape:
        raise ValueError(f"{len(pos)} positive rows but {len(neg)} negative: pairs must align")
    diffs = (pos - neg).double()
    axis = torch.linalg.svd(diffs, full_matrices=False).Vh[0]
    if axis @ diffs.mean(0) < 0:  # SVD's sign is arbitrary: point along the mean difference
        axis = -axis
    return cls(name or f"pca-diff@{layer}", axis.float(), layer, "pca_of_differences",
               info={"pairs": len(diffs)}, source=source)


def counterfactual(cls: type[Direction], session: Session, word_pairs,
                   name: str | None) -> Direction:
    """See :meth:`Direction.counterfactual`.

    The direction is the plain mean of ``gamma(y1) - gamma(y0)`` over the unembedding
    vectors of the words' in-sentence tokens (:func:`~reprlab.tokens.word_token_ids`).
    (Averaging in the causal space and mapping back is the same vector: the causal map is
    linear, so it is not done.) Its geometry is chosen where it is used: cosines and
    projections map it with the inner product asked for, and steering uses the causal Riesz
    map (:func:`~reprlab.geometry.residual_vector`). Pairs where either word is not a
    single token are skipped and listed in ``info``.
    """
    pairs = list(word_pairs.pairs if hasattr(word_pairs, "pairs") else word_pairs)
    if not pairs:
        raise ValueError("word_pairs is empty: pass pairs like [('king', 'queen'), ...]")
    for pair in pairs:
        if len(pair) != 2 or not all(isinstance(w, str) and w.strip() for w in pair):
            raise ValueError(f"each pair needs two words, got {pair!r}")
    ids, skipped = [], []
    for pair in pairs:
        tokens = word_token_ids(session.tokenizer, pair)
        if None in tokens:
            skipped.append(tuple(pair))
        else:
            ids.append(tuple(tokens))
    if not ids:
        raise ValueError(f"none of the {len(pairs)} pairs are single tokens for this model's "
                         "tokenizer; use common words")
    gamma = session.backend.unembedding.detach()
    idx = torch.tensor(ids, device=gamma.device)
    vector = (gamma[idx[:, 1]].double() - gamma[idx[:, 0]].double()).mean(0)
    label = name or getattr(word_pairs, "name", None) or f"{pairs[0][0]}->{pairs[0][1]}"
    return cls(label, vector, None, "counterfactual", space="unembedding",
               info={"pairs_used": len(ids), "pairs_skipped": skipped},
               source=getattr(session, "ref", None))


def from_dataset(cls: type[Direction], session: Session, dataset: str, layer: int,
                 method: Method, name: str | None) -> Direction:
    """See :meth:`Direction.from_dataset`."""
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
    acts = session.activations(list(data.texts), copy=False)
    labels = np.asarray(data.labels)
    pos = acts.select(rows=np.flatnonzero(labels == classes[0]))
    neg = acts.select(rows=np.flatnonzero(labels == classes[1]))
    name = name or f"{dataset}@{layer}"
    if method == "mean_difference":
        d = mean_difference(cls, pos, neg, layer, name)
    elif method == "pca_of_differences":
        n = min(len(pos), len(neg))
        d = pca_of_differences(cls, (pos.select(rows=slice(0, n)), neg.select(rows=slice(0, n))),
                               layer, name)
    else:  # "probe"
        curve = probe_curve(acts.select([layer]), data.labels, groups=data.groups,
                            control=False)
        d = from_probe(cls, curve, layer, name)
        if d.info["positive"] != classes[0]:
            d = replace(d, vector=-d.vector)
    info = {**d.info, "dataset": dataset, "positive": classes[0], "negative": classes[1]}
    return replace(d, info=info)
