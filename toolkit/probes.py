"""Layer-wise linear probes: every layer, fold and control shuffle fitted in one batched solve.

>>> curve = probe_curve(acts, labels)            # doctest: +SKIP
>>> curve.best_layer, curve.scores[curve.best_layer_index]   # doctest: +SKIP
(14, 0.97)
>>> curve.p_value, curve.summary()                           # doctest: +SKIP

Significance accounts for picking the best layer: the same probes are refitted on
``n_permutations`` label shuffles in the same batched solve as the real labels (one solver, one
tolerance: the scores shown, the held-out outputs and the null all come from it; only the
all-rows probe behind ``weights`` is a separate solve). Each layer gets its own permutation
p-value against *its own* shuffles, and the family-wise correction compares layers on one
scale: each layer's score is standardized by the mean and spread of its own shuffles, and the
null is the best standardized score over layers of each shuffle (Westfall & Young's max-T, the
same shuffles, no extra fit). Raw scores of layers whose nulls differ are never maxed together
(a constant layer's shuffles all score the same and would pin a raw maximum). "Some layer is
above chance" is tested at the stated level however many layers there are. (Min-p, the other
Westfall-Young form, needs many more shuffles than layers: with 100 shuffles and 31 layers its
smallest corrected p is about 31 / 101.) A layer at or below its task's chance level (R^2 <= 0,
accuracy <= the majority rate) is never called above chance (p = 1).

Classification uses L2-regularized logistic regression (binary: sigmoid, more classes:
softmax), regression uses ridge; features are standardized per fold with the training rows'
mean and standard deviation, exactly as ``StandardScaler`` inside a scikit-learn CV loop. ``C``
is scikit-learn's ``C`` and ``ridge`` is ``Ridge(alpha=)``, so results match one to one.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .activations import Activations
from .checks import as_float, as_int, as_seed
from .model_ref import FromModel, ModelRef
from .numbers import fmt_p, fmt_score, fmt_signed
from .probe_solvers import (
    Fit,
    FoldStats,
    fit_logistic,
    fit_ridge,
    fold_standardization,
    layer_chunks,
    logistic_bytes,
    ridge_bytes,
)
from .types import Task

TASKS = ("auto", "classification", "regression")
#: Newton-decrement tolerance of the cross-validated logistic solve (real labels and shuffles
#: alike): held-out accuracies agree with a 1e-7 solve to within one example, at a quarter of
#: its cost on 30 classes. The all-rows probe behind ``weights`` is solved to 1e-7.
FOLD_TOL = 1e-5


@dataclass(frozen=True, eq=False)
class ProbeCurve(FromModel):
    """Cross-validated probe scores per layer, with fold spread, a shuffled-label control and
    significance corrected for choosing among the layers.

    ``scores[i]`` is the mean test score at hidden state ``layers[i]`` (accuracy, or R^2 for
    numeric labels); ``fold_scores[i]`` holds the per-fold values, ``control[i]`` the same
    probe's score on shuffled labels (mean over shuffles). ``null_max[b]`` is shuffle ``b``'s best
    score over all layers (descriptive), ``p_uncorrected[i]`` layer ``i``'s permutation p-value
    against its own shuffles and ``p_values[i]`` the p-value corrected over layers (standardized
    max-T; 1 at or below chance). ``weights[i]`` is the probe fitted on
    all examples, expressed in raw activation space (``[outputs, width]``: one row for two
    classes or regression, one per class otherwise), so that
    ``logit = acts.layer(l) @ weights[i].T + bias[i]``.
    """

    layers: tuple[int, ...]
    task: str
    metric: str
    scores: np.ndarray
    fold_scores: np.ndarray
    control: np.ndarray | None
    control_fold_scores: np.ndarray | None
    chance: float
    classes: tuple | None
    labels: tuple
    fold_ids: np.ndarray
    weights: torch.Tensor
    bias: torch.Tensor
    heldout: torch.Tensor = field(repr=False)
    null_max: np.ndarray | None = None
    p_values: np.ndarray | None = None
    regularization: float = 0.0
    seed: int = 0
    texts: tuple[str, ...] = ()
    source: ModelRef | None = None  # the model that made the activations (None if unknown)
    p_uncorrected: np.ndarray | None = None  # per layer, against its own shuffles

    @property
    def spread(self) -> np.ndarray:
        """Standard deviation of the score across folds, per layer."""
        return self.fold_scores.std(axis=1)

    @property
    def control_spread(self) -> np.ndarray | None:
        """Standard deviation of the control score across folds and shuffles, per layer."""
        if self.control_fold_scores is None:
            return None
        return self.control_fold_scores.std(axis=(1, 2))

    @property
    def selectivity(self) -> np.ndarray:
        """Score minus control score (Hewitt & Liang): what the probe reads beyond chance fits."""
        if self.control is None:
            raise ValueError("this curve was computed with control=False")
        return self.scores - self.control

    @property
    def n_permutations(self) -> int:
        return 0 if self.null_max is None else len(self.null_max)

    @property
    def p_value(self) -> float:
        """P-value that *some* layer reads the labels (the best layer's corrected p-value)."""
        self._require_null()
        return float(self.p_values.min())

    @property
    def min_p_value(self) -> float:
        """Smallest p-value attainable with this many shuffles, ``1 / (n_permutations + 1)``."""
        self._require_null()
        return 1.0 / (self.n_permutations + 1)

    def significant(self, level: float = 0.05) -> np.ndarray:
        """Layers whose corrected p-value is below ``level`` (boolean ``[L]``)."""
        self._require_null()
        return self.p_values < level

    def threshold(self, level: float = 0.05) -> float:
        """The ``1 - level`` quantile of the best-over-layers score under shuffled labels
        (descriptive; the test itself is per layer, see :meth:`thresholds`)."""
        self._require_null()
        return float(np.quantile(self.null_max, 1 - level, method="higher"))

    def thresholds(self, level: float = 0.05) -> np.ndarray:
        """Per layer, the score a layer must beat to be significant at ``level`` (corrected
        over layers, and never at or below chance) ``[L]``."""
        self._require_null()
        null = self.control_fold_scores.mean(2)                                 # [L, B]
        return standardized_max_thresholds(null, self.chance, level)

    @property
    def best_selectivity(self) -> float:
        """Best score minus the mean best score of shuffled labels: the best layer is picked
        by its score, so its control is picked the same way (the max over layers)."""
        self._require_null()
        return float(self.scores.max() - self.null_max.mean())

    def summary(self, level: float = 0.05) -> str:
        """One plain sentence: best layer, its score, and whether any layer beats chance."""
        best = self.best_layer_index
        score = f"{self.metric} {fmt_score(self.scores[best])} ± {fmt_score(self.spread[best])}"
        if self.null_max is None:
            return (f"Best layer {self.best_layer}: {score} ({len(self.labels)} examples); "
                    "no significance test (control=False).")
        n_sig = int(self.significant(level).sum())
        p = fmt_p(self.p_value, self.min_p_value)
        null = (f"shuffled labels reach {fmt_score(self.null_max.mean())} at their best layer, "
                f"{fmt_score(self.threshold(level))} at the {1 - level:.0%} quantile")
        if n_sig == 0:
            return (f"No layer is above chance ({p}, corrected for {len(self.layers)} "
                    f"layers): the best, layer {self.best_layer}, reaches {score}, and {null} "
                    f"({len(self.labels)} examples, {self.n_permutations} shuffles).")
        return (f"Best layer {self.best_layer}: {score}; {n_sig} of {len(self.layers)} layers "
                f"above chance ({p} at the best, corrected for choosing among layers; "
                f"{null}; selectivity {fmt_signed(self.best_selectivity)}; {len(self.labels)} "
                f"examples, {self.n_permutations} shuffles).")

    def _require_null(self) -> None:
        if self.null_max is None:
            raise ValueError("this curve was computed with control=False: no permutation test")

    @property
    def best_layer_index(self) -> int:
        return int(np.argmax(self.scores))

    @property
    def best_layer(self) -> int:
        """Hidden-state index with the highest mean score (the earliest on ties)."""
        return self.layers[self.best_layer_index]

    def index(self, layer: int) -> int:
        try:
            return self.layers.index(layer)
        except ValueError:
            layers = list(self.layers)
            raise KeyError(f"layer {layer} not in this curve; layers: {layers}") from None

    def heldout_scores(self, layer: int) -> torch.Tensor:
        """Each example's probe output at ``layer`` from the fold that held it out.

        Two classes or regression: ``[n]`` (logit or prediction); more classes: ``[n, classes]``.
        """
        out = self.heldout[self.index(layer)]
        return out[:, 0] if out.shape[1] == 1 else out

    def heldout_probabilities(self, layer: int) -> torch.Tensor:
        """Held-out class probabilities ``[n, classes]`` at ``layer`` (classification only)."""
        if self.task != "classification":
            raise ValueError("probabilities exist for classification curves only")
        out = self.heldout[self.index(layer)]
        if out.shape[1] == 1:
            p = torch.sigmoid(out[:, 0])
            return torch.stack([1 - p, p], dim=1)
        return torch.softmax(out, dim=1)

    def rows(self) -> list[dict]:
        """One dict per layer: score, spread, control, selectivity (for tables and CSV)."""
        rows = []
        for i, layer in enumerate(self.layers):
            row = {"layer": layer, self.metric: float(self.scores[i]),
                   "fold_std": float(self.spread[i])}
            if self.control is not None:
                row["control"] = float(self.control[i])
                row["selectivity"] = float(self.scores[i] - self.control[i])
                row["p_corrected"] = float(self.p_values[i])
            rows.append(row)
        return rows

    def __repr__(self) -> str:
        best = self.best_layer_index
        ctrl = "" if self.control is None else (
            f", control {fmt_score(self.control[best], 3)}, "
            f"{fmt_p(self.p_value, self.min_p_value)}")
        return (
            f"ProbeCurve({self.task}, {len(self.labels)} examples, {len(self.layers)} layers, "
            f"best layer {self.best_layer}: {self.metric} {fmt_score(self.scores[best], 3)}"
            f" ± {fmt_score(self.spread[best], 3)}{ctrl})"
        )


def probe_curve(
    acts: Activations,
    labels: Sequence,
    folds: int = 5,
    *,
    control: bool = True,
    n_permutations: int = 100,
    seed: int = 0,
    task: Task = "auto",
    C: float = 0.01,
    ridge: float = 100.0,
    groups: Sequence | None = None,
    max_iter: int = 300,
    **renamed,
) -> ProbeCurve:
    """Cross-validated linear probe score at every layer of ``acts``.

    ``labels``: one per text; strings/ints/bools are classes, floats are regression targets
    (override with ``task``). ``C``: inverse L2 strength of the logistic probe (scikit-learn's
    ``C`` on standardized features); ``ridge``: ridge strength (``Ridge(alpha=)``).
    ``groups``: examples sharing a group stay in the same fold (e.g. a statement and its
    negation). Shuffles move labels only within a fold and between groups of a fold, never
    breaking the folds' class balance or a group's label pattern (:func:`permute_labels`).
    ``control``: also fit the probes on ``n_permutations`` label shuffles (default 100, so
    p < 0.01 is reachable), giving the per-layer control (their mean) and the max-over-layers
    permutation test.
    """
    if renamed:
        _refuse_renamed(renamed)
    y_raw, task = check_labels(labels, len(acts), task)
    folds = as_int(folds, "folds", minimum=2)
    seed = as_seed(seed)
    n_permutations = as_int(n_permutations, "n_permutations", minimum=0)
    C = as_float(C, "C", example=0.01)
    ridge = as_float(ridge, "ridge", example=100.0)
    if C <= 0:
        raise ValueError(f"C must be > 0 (such as 0.01; smaller means a stronger penalty), "
                         f"got {C:g}")
    if ridge <= 0:
        raise ValueError(f"ridge must be > 0 (such as 100; larger means a stronger penalty), "
                         f"got {ridge:g}")
    max_iter = as_int(max_iter, "max_iter", minimum=1)
    values = acts.values  # float16 storage is fine: the solvers fit float32, a chunk at a time
    for i, layer_values in enumerate(values):  # one layer at a time: no full-size mask
        if not torch.isfinite(layer_values).all():
            text = int(torch.nonzero(~torch.isfinite(layer_values).all(dim=-1))[0])
            raise ValueError(
                f"activations contain NaN/inf (first at layer {acts.layers[i]}, text {text}); "
                "check the model's dtype (float16 can overflow) or re-extract"
            )
    rng = np.random.default_rng(seed)
    if task == "classification":
        classes, y = np.unique(np.asarray(y_raw, dtype=object).astype(str), return_inverse=True)
        first = {}
        for v in y_raw:  # one pass (not one per class): many classes cost no more than rows
            first.setdefault(str(v), v.item() if isinstance(v, np.generic) else v)
        classes = tuple(first[c] for c in classes)
        fold_ids = assign_folds(y, folds, seed=seed, groups=groups)
        check_class_counts(y, folds, y_raw)
    else:
        classes, y = None, np.asarray(y_raw, dtype=np.float64)
        fold_ids = assign_folds(None, folds, seed=seed, groups=groups, n=len(y))
    if control and n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1 (100 makes p < 0.01 reachable), "
                         f"got {n_permutations}")
    shuffles = [permute_labels(y, groups, rng, fold_ids)
                for _ in range(n_permutations if control else 0)]

    device, (_, n, d) = values.device, values.shape
    train = torch.tensor(
        np.stack([fold_ids != f for f in range(folds)] + [np.ones(len(y), bool)]), device=device
    )  # [F+1, N]; the last "fold" trains on everything, for the reported weights
    stats = fold_standardization(values, train)
    test = ~train[:folds]
    variants = np.stack([y] + shuffles)
    if task == "classification":
        # One solve for the real labels and every shuffle, on the folds only, at one tolerance:
        # the scores shown, the held-out outputs and the permutation null all come from it, so
        # the test compares like with like. The all-rows probe (the reported weights) is a
        # separate solve of the real labels that feeds no score.
        k = len(classes)
        fold_only = FoldStats(stats.center, stats.mu[:, :folds], stats.sd[:, :folds],
                              stats.n[:folds])
        per_layer = logistic_bytes(n, d, folds * len(variants) * (1 if k == 2 else k))
        all_fold_scores, fit = _fit_scored(
            lambda c: fit_logistic(values[c], variants, k, train[:folds], fold_only.layers(c),
                                   C=C, max_iter=max_iter, tol=FOLD_TOL),
            variants, test, task, len(acts.layers), per_layer)                 # [L, F, 1+B]
        everything = FoldStats(stats.center, stats.mu[:, folds:], stats.sd[:, folds:],
                               stats.n[folds:])
        full = fit_logistic(values, y[None], k, train[folds:], everything, C=C,
                            max_iter=max_iter)
        weights, bias = full.weights[:, 0, 0], full.bias[:, 0, 0]
        metric, chance = "accuracy", float(np.bincount(y).max() / len(y))
        reg = C
    else:
        per_layer = ridge_bytes(n, d, folds + 1, len(variants), dual=n < d)
        all_fold_scores, fit = _fit_scored(
            lambda c: fit_ridge(values[c], variants, train, stats.layers(c), ridge=ridge),
            variants, test, task, len(acts.layers), per_layer)
        weights, bias = fit.weights[:, folds, 0], fit.bias[:, folds, 0]
        metric, chance, reg = "r2", 0.0, ridge
    fold_scores = all_fold_scores[:, :, 0]                                    # [L, F]
    heldout = _heldout(fit.outputs[:, :folds, 0], fold_ids)
    scores = fold_scores.mean(1)
    null_max = p_values = p_uncorrected = ctrl = ctrl_folds = None
    if control:
        null = all_fold_scores[:, :, 1:].mean(1)                                 # [L, B]
        null_max = null.max(0)
        p_uncorrected, p_values = standardized_max_p_values(scores, null, chance)
        ctrl = null.mean(1)
        ctrl_folds = all_fold_scores[:, :, 1:].transpose(0, 2, 1)
    return ProbeCurve(
        layers=acts.layers,
        task=task,
        metric=metric,
        scores=scores,
        fold_scores=fold_scores,
        control=ctrl,
        control_fold_scores=ctrl_folds,
        chance=chance,
        classes=classes,
        labels=tuple(y_raw),
        fold_ids=fold_ids,
        weights=weights.cpu(),
        bias=bias.cpu(),
        heldout=heldout.cpu(),
        null_max=null_max,
        p_values=p_values,
        regularization=reg,
        seed=seed,
        texts=acts.texts,
        source=acts.source,
        p_uncorrected=p_uncorrected,
    )


def standardized_max_p_values(scores: np.ndarray, null: np.ndarray, chance: float | None = None
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer permutation p-values, corrected over layers on one scale (Westfall & Young's
    max-T with each layer's statistic standardized by its own null).

    ``scores`` ``[L]``: the real labels' score per layer; ``null`` ``[L, B]``: the same probes
    on ``B`` shuffles. Layer ``l``'s statistic is ``t_l = (scores[l] - mean_l) / sd_l`` with
    the mean and standard deviation of its own shuffles; each shuffle's statistics are
    standardized the same way and ``T_b = max_l t_lb``; the corrected p-value is ``(1 +
    #{b: T_b >= t_l}) / (B + 1)`` (ties count against the layer). Raw scores of layers whose
    nulls differ are never maxed together: a layer whose shuffles all score alike (a constant
    layer) cannot be tested and gets p = 1, so it cannot pin the null either. ``chance``:
    layers scoring at or below it get p = 1 (never called above chance).

    Returns ``(p_uncorrected, p_corrected)``; ``p_uncorrected[l] = (1 + #{b: null[l, b] >=
    scores[l]}) / (B + 1)``, against the layer's own shuffles.
    """
    scores = np.asarray(scores, dtype=np.float64)
    null = np.asarray(null, dtype=np.float64)
    B = null.shape[1]
    tol = 1e-9 * max(1.0, float(np.abs(scores).max()), float(np.abs(null).max()))
    p_raw = (1 + (null >= scores[:, None] - tol).sum(1)) / (B + 1)
    mu, sd = null.mean(1), null.std(1)
    live = sd > 1e-6 * np.maximum(1.0, np.abs(mu))  # shuffles that vary: a testable layer
    safe = np.where(live, sd, 1.0)
    t = np.where(live, (scores - mu) / safe, -np.inf)
    t_null = np.where(live[:, None], (null - mu[:, None]) / safe[:, None], -np.inf).max(0)
    p = (1 + (t_null[None, :] >= t[:, None] - 1e-9 * np.maximum(1.0, np.abs(t[:, None])))
         .sum(1)) / (B + 1)
    p = np.where(live, p, 1.0)
    if chance is not None:
        p = np.where(scores <= chance + tol, 1.0, p)
    return p_raw, p


def standardized_max_thresholds(null: np.ndarray, chance: float, level: float = 0.05
                                ) -> np.ndarray:
    """Per layer, the score to beat for :func:`standardized_max_p_values` to call the layer
    significant at ``level`` ``[L]``: ``mean_l + q * sd_l`` with ``q`` the ``1 - level``
    quantile of the shuffles' best standardized score, and at least ``chance`` (``inf`` for a
    layer that cannot be tested)."""
    null = np.asarray(null, dtype=np.float64)
    mu, sd = null.mean(1), null.std(1)
    live = sd > 1e-6 * np.maximum(1.0, np.abs(mu))
    safe = np.where(live, sd, 1.0)
    t_null = np.where(live[:, None], (null - mu[:, None]) / safe[:, None], -np.inf).max(0)
    q = np.quantile(t_null, 1 - level, method="higher")
    return np.where(live, np.maximum(mu + q * sd, chance), np.inf)


def max_statistic_p_values(scores: np.ndarray, null: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Family-wise corrected p-value per layer from per-shuffle scores ``null`` ``[L, B]``.

    Returns ``(null_max, p_values)``: the best score over layers of each shuffle ``[B]``, and
    for each layer ``(1 + #{b: null_max[b] >= scores[l]}) / (B + 1)``. Ties count against the
    layer (conservative), so the test holds its level for discrete scores like accuracy.
    """
    null_max = null.max(0)
    tol = 1e-9 * max(1.0, float(np.abs(scores).max()))
    exceed = (null_max[None, :] >= scores[:, None] - tol).sum(1)
    return null_max, (1 + exceed) / (1 + len(null_max))


def permute_labels(y: np.ndarray, groups=None, rng=None, folds=None) -> np.ndarray:
    """One label shuffle that respects the design: ``folds`` and ``groups``.

    Labels move only within a fold, so every fold keeps the class counts its real labels have
    (shuffling across stratified folds would unbalance them, and imbalanced training folds score
    *below* chance, which would make the real labels look significant under the null). Within
    a fold, each group's labels move as a block to another group of the same size and are then
    permuted inside it: twins (a statement and its negation, one true one false) keep one label
    each, and groups that share a label keep sharing one.
    """
    rng = np.random.default_rng() if rng is None else rng
    y = np.asarray(y)
    n = len(y)
    folds = np.zeros(n, int) if folds is None else np.asarray(folds)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    out = np.empty_like(y)
    blocks = {}
    for i in range(n):
        blocks.setdefault((folds[i], groups[i]), []).append(i)
    by_stratum = {}
    for (fold, _), idx in blocks.items():
        by_stratum.setdefault((fold, len(idx)), []).append(np.array(idx))
    for members in by_stratum.values():
        for dest, src in zip(members, rng.permutation(len(members))):
            out[dest] = rng.permutation(y[members[src]])
    return out


def assign_folds(y, folds: int, *, seed: int = 0, groups=None, n: int | None = None) -> np.ndarray:
    """Fold id per example: stratified by class when ``y`` is given, grouped when ``groups`` is.

    Deterministic for a seed; matches ``PredefinedSplit(fold_ids)`` in scikit-learn.
    """
    n = len(y) if y is not None else n
    rng = np.random.default_rng(seed)
    if groups is not None:
        missing = [i for i, g in enumerate(groups) if is_missing(g)]
        if missing:
            raise ValueError(f"groups are missing (NaN, None or NA) at {rows_text(missing)}: "
                             "give every example a group, or pass groups=None")
        groups = np.asarray(groups)
        if len(groups) != n:
            raise ValueError(f"groups has {len(groups)} entries but there are {n} examples")
        unique = rng.permutation(np.unique(groups))
        if len(unique) < folds:
            raise ValueError(f"{len(unique)} groups are fewer than folds={folds}")
        fold_of_group = {g: i % folds for i, g in enumerate(unique)}
        return np.array([fold_of_group[g] for g in groups])
    if n < folds:
        raise ValueError(f"{n} examples are fewer than folds={folds}; use fewer folds")
    fold_ids = np.empty(n, dtype=int)
    if y is None:
        fold_ids[rng.permutation(n)] = np.arange(n) % folds
        return fold_ids
    offset = 0
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        fold_ids[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)
    return fold_ids


def check_labels(labels: Sequence, n_texts: int, task: str = "auto") -> tuple[list, str]:
    """Validate probe labels for ``n_texts`` texts; returns them as a list and the task
    ("classification" or "regression", inferred when ``task="auto"``)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if isinstance(labels, torch.Tensor):
        labels = labels.tolist()
    labels = list(np.asarray(labels, dtype=object).ravel()) if labels is not None else []
    if len(labels) != n_texts:
        raise ValueError(
            f"labels has {len(labels)} entries but the activations hold {n_texts} texts; "
            "pass one label per text, in the same order"
        )
    missing = [i for i, v in enumerate(labels) if is_missing(v)]
    if missing:
        raise ValueError(f"labels are missing (NaN, None or NA) at {rows_text(missing)}: drop "
                         "those examples or fill their labels")
    numeric = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                  for v in labels)
    infinite = [i for i, v in enumerate(labels) if numeric and np.isinf(float(v))]
    if infinite:
        raise ValueError(f"labels are infinite at {rows_text(infinite)}: pass finite numbers, "
                         "or drop those examples")
    if task == "auto":
        floats = numeric and any(isinstance(v, (float, np.floating)) for v in labels)
        task = "regression" if floats else "classification"
    if task == "regression" and not numeric:
        raise ValueError("regression needs numeric labels")
    if task == "classification":
        counts = {}
        for v in labels:
            counts[str(v)] = counts.get(str(v), 0) + 1
        if len(counts) < 2:
            raise ValueError(
                f"labels hold one class only ({next(iter(counts))!r}); a probe needs at least two"
            )
    elif np.ptp(np.asarray(labels, dtype=float)) == 0:
        raise ValueError("numeric labels are all equal; R^2 is undefined")
    return labels, task


def check_class_counts(y: np.ndarray, folds: int, labels: Sequence = ()) -> None:
    """Refuse a classification whose classes are too thin for its folds; warn when thin.

    ``y``: class index per example. A typical (median) class with fewer examples than folds
    (under one per test fold) makes the probe pointless (a held-out example's class is barely
    in training) while the fit costs about ``classes`` two-class probes: a ValueError says what
    to do. Fewer than 2 examples per class per fold (median below ``2 * folds``): a warning.
    """
    counts = np.bincount(np.asarray(y))
    k, n, typical = len(counts), len(y), float(np.median(counts))
    numeric = len(labels) > 0 and all(_looks_numeric(v) for v in labels)
    hint = ("the labels look like numbers: pass them as floats (or task='regression') to fit "
            "a regression instead" if numeric else
            f"merge rare classes, collect at least {2 * folds} examples per class (2 per "
            f"fold), or use fewer folds")
    if typical < folds:
        raise ValueError(
            f"{k} classes for {n} examples: the typical class has {typical:g} example(s), "
            f"fewer than one per fold ({folds} folds), so a held-out example's class is barely "
            f"seen in training and the score means nothing (and the fit would cost about {k} "
            f"two-class probes); {hint}")
    if typical < 2 * folds:
        warnings.warn(
            f"{k} classes for {n} examples: the typical class has {typical:g} examples, fewer "
            f"than 2 per fold with {folds} folds, so scores will be noisy; {hint}",
            UserWarning, stacklevel=3)


def _looks_numeric(value) -> bool:
    """A number, or a string that parses as one ("3", "-0.5")."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float, np.number)):
        return True
    try:
        float(str(value).strip())
    except ValueError:
        return False
    return True


def is_missing(value) -> bool:
    """Whether a label or group is a missing value: None, NaN, or pandas' NA / NaT."""
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return True
    return isinstance(value, (float, np.floating)) and bool(np.isnan(value))


def rows_text(rows: Sequence[int], limit: int = 8) -> str:
    """``rows 3, 7 and 9`` (the first ``limit``, then how many more)."""
    shown = ", ".join(map(str, rows[:limit]))
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def _score(outputs: torch.Tensor, targets: np.ndarray, test: torch.Tensor, task: str) -> np.ndarray:
    """Test score per (layer, fold, variant) from outputs ``[L, F, S, N, K]``."""
    t = torch.as_tensor(targets, device=outputs.device)  # [S, N]
    mask = test[None, :, None, :].to(outputs.dtype)      # [1, F, 1, N]
    if task == "classification":
        pred = outputs.argmax(-1) if outputs.shape[-1] > 1 else (outputs[..., 0] > 0).long()
        correct = (pred == t[None, None]).to(outputs.dtype)
        return ((correct * mask).sum(-1) / mask.sum(-1)).cpu().numpy()
    pred = outputs[..., 0]
    t = t.to(outputs.dtype)[None, None]
    n = mask.sum(-1, keepdim=True)
    mean = (t * mask).sum(-1, keepdim=True) / n
    ss_tot = (((t - mean) ** 2) * mask).sum(-1)
    ss_res = (((t - pred) ** 2) * mask).sum(-1)
    return (1 - ss_res / ss_tot).cpu().numpy()


def _fit_scored(fit_chunk, targets: np.ndarray, test: torch.Tensor, task: str,
                n_layers: int, per_layer: int) -> tuple[np.ndarray, Fit]:
    """``fit_chunk(layers)`` chunk by chunk of layers (sized from the memory budget, counting
    the scoring's own tensors): returns the test scores ``[L, F, S]`` of every label variant
    and the fit of the real labels only, so no output tensor holds every layer and shuffle.
    Scored one layer at a time: a reduction's rounding may depend on the tensor's shape."""
    folds = test.shape[0]
    scores, kept = [], []
    for chunk in layer_chunks(n_layers, per_layer + 24 * test.shape[1] * folds * len(targets)):
        fit = fit_chunk(chunk)
        scores += [_score(out[None, :folds], targets, test, task) for out in fit.outputs]
        kept.append(Fit(fit.outputs[:, :, :1].contiguous(), fit.weights[:, :, :1].contiguous(),
                        fit.bias[:, :, :1].contiguous()))  # copies: the full fit is freed
        del fit
    return np.concatenate(scores), Fit.cat(kept)


def _heldout(outputs: torch.Tensor, fold_ids: np.ndarray) -> torch.Tensor:
    """Pick each example's output from its own test fold: ``[L, F, N, K] -> [L, N, K]``."""
    idx = torch.as_tensor(fold_ids, device=outputs.device)
    rows = torch.arange(len(fold_ids), device=outputs.device)
    return outputs[:, idx, rows]


RENAMED_KEYWORDS = {"alpha": "ridge", "n_shuffles": "n_permutations"}


def _refuse_renamed(kwargs: dict) -> None:
    """Until 1.0: an old keyword fails naming the new one (the meaning changed, so no alias)."""
    for old in kwargs:
        new = RENAMED_KEYWORDS.get(old)
        if new is not None:
            raise TypeError(f"probe_curve() got an unexpected keyword argument {old!r}: "
                            f"{old}= was renamed {new}= (see CHANGELOG.md)")
    raise TypeError(f"probe_curve() got an unexpected keyword argument {next(iter(kwargs))!r}")
