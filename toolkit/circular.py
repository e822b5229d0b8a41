"""Circular features (Engels et al., "Not All Language Model Features Are Linear").

Days of the week or months may sit on a circle in some layers. Telling a real circle from an
artefact needs the right null: a ridge "circle probe" onto (cos, sin) of each item's angle
decodes a *shuffled* cyclic order about as well as the true one whenever the items are merely
distinguishable, so the probe alone proves nothing. The headline test here is geometric: does
the distance between item means follow cyclic distance *beyond* linear-order distance? A linear
sequence (first..twelfth) correlates with cyclic distance too, so rho(cyclic) alone is no
evidence. The verdict tests the difference rho(cyclic) - rho(linear) against relabelled items,
family-wise corrected for choosing a layer: each layer's difference is standardized by its own
relabellings and the null is the best standardized value over layers (max-T), so layers whose
nulls differ are compared on one scale; a difference <= 0 is never called circular. Ties are
reported honestly: the cycle's symmetries (rotations and reflections) leave rho(cyclic)
unchanged, so with 7 items no p below 14 / 7! ~ 0.003 can be trusted (``stats.min_p_value``),
and with 4 items nothing is ever significant (8 / 4! = 0.33).

The statistics depend on the examples and the inner product only: the 2-D map (``map_method``:
PCA, UMAP, circle probe) changes the picture, never the numbers.

>>> res = circular_analysis(session, "days", map_method="pca")  # doctest: +SKIP
>>> res.stats.rho_cyclic[res.index(8)], res.stats.p_value[res.index(8)]  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from dataclasses import replace as dc_replace
from typing import TYPE_CHECKING, get_args

import numpy as np
import torch

from . import datasets
from .datasets import Cycle
from .numbers import fmt_p, fmt_score
from .probe_solvers import fit_ridge, fold_standardization
from .types import CircularMethod, Inner, check_inner

if TYPE_CHECKING:
    from .session import Session

#: How the 2-D map is made (``circular_analysis(map_method=)``).
MAP_METHODS = get_args(CircularMethod)
METHODS = MAP_METHODS  # the old name, kept for imports
# Items never open a text: the first token is an attention sink with huge activations.
CUSTOM_TEMPLATES = ("It was {}.", "This is {}.", "We talked about {} today.",
                    "Next on the list: {}.", "I keep thinking of {}.", "The answer was {}.")


@dataclass(frozen=True)
class CircularityStats:
    """Per-layer geometry test and circle-probe scores (arrays over ``layers``)."""

    rho_cyclic: np.ndarray   # Spearman: item-mean distances vs cyclic distance
    rho_linear: np.ndarray   # Spearman: item-mean distances vs linear-order distance
    p_value: np.ndarray      # permutation p of rho_cyclic alone (per layer, uncorrected; any
                             # ordered structure, linear included, makes it small)
    null_low: np.ndarray     # 2.5% and 97.5% quantiles of rho_cyclic under the null
    null_high: np.ndarray
    probe_score: np.ndarray    # circle probe: leave-one-template-out item accuracy
    probe_control: np.ndarray  # the same probe on a shuffled cyclic order
    n_permutations: int
    # p of rho_cyclic - rho_linear, family-wise corrected over all layers (max-T on each
    # layer's standardized difference; 1 where the difference is <= 0)
    p_beyond_linear: np.ndarray = None
    min_p_value: float = 0.0  # smallest p to expect: ties from the cycle's 2k symmetries
    level: float = 0.05

    @property
    def rho_difference(self) -> np.ndarray:
        """rho(cyclic) - rho(linear): how much better cyclic distance explains the geometry."""
        return self.rho_cyclic - self.rho_linear

    @property
    def circular(self) -> np.ndarray:
        """Cyclic beyond linear order, corrected across layers (per layer)."""
        return self.p_beyond_linear < self.level

    def take(self, indices: Sequence[int]) -> CircularityStats:
        """The statistics of some layers (by position), e.g. to reuse them for one layer."""
        idx = np.asarray(indices, dtype=int)
        arrays = {f.name: getattr(self, f.name)[idx] for f in fields(self)
                  if isinstance(getattr(self, f.name), np.ndarray)}
        return dc_replace(self, **arrays)


@dataclass(frozen=True, eq=False)
class CircularAnalysis:
    """2-D coordinates of every example at some layers, plus circularity tests at all layers.

    A kernel result (a view is a widget: :class:`reprlab.widgets.CircularMap` shows these).
    ``map_method`` says how ``coords`` were made ("pca", "umap" or "circle_probe").
    """

    cycle: str
    items: tuple[str, ...]
    texts: tuple[str, ...]
    item_index: np.ndarray              # [n] which item each example shows
    template_index: np.ndarray          # [n] which carrier template
    layers: tuple[int, ...]             # layers with statistics
    map_method: str                     # how the 2-D map is made: pca, umap, circle_probe
    inner: str
    coords: dict[int, np.ndarray] = field(repr=False)   # layer -> [n, 2] (computed layers)
    stats: CircularityStats = field(repr=False, default=None)
    seed: int = 0

    @property
    def method(self) -> str:
        """Deprecated name of :attr:`map_method`."""
        warnings.warn("CircularAnalysis.method is now .map_method (the 2-D map); .method "
                      "will be removed in 1.0", DeprecationWarning, stacklevel=2)
        return self.map_method

    def index(self, layer: int) -> int:
        try:
            return self.layers.index(layer)
        except ValueError:
            raise KeyError(f"layer {layer} not in this analysis; layers: "
                           f"{list(self.layers)}") from None

    def item_means(self, layer: int) -> np.ndarray:
        """Mean 2-D position of each item ``[items, 2]``, in cyclic order."""
        xy = self.coords[layer]
        return np.stack([xy[self.item_index == k].mean(0) for k in range(len(self.items))])

    def rows(self) -> list[dict]:
        """Per-layer circularity statistics, one dict per layer (for CSV)."""
        s = self.stats
        return [{"layer": layer, "rho_cyclic": float(s.rho_cyclic[i]),
                 "rho_linear": float(s.rho_linear[i]),
                 "rho_difference": float(s.rho_difference[i]),
                 "p_beyond_linear_corrected": float(s.p_beyond_linear[i]),
                 "p_value": float(s.p_value[i]),
                 "null_low": float(s.null_low[i]), "null_high": float(s.null_high[i]),
                 "circle_probe": float(s.probe_score[i]),
                 "circle_probe_shuffled": float(s.probe_control[i]),
                 "circular": bool(s.circular[i]), "cycle": self.cycle, "inner": self.inner}
                for i, layer in enumerate(self.layers)]

    def summary(self, layer: int) -> str:
        i = self.index(layer)
        s = self.stats
        verdict = "circular" if s.circular[i] else "not shown circular"
        p = s.p_beyond_linear[i]
        p_text = fmt_p(p, s.min_p_value) + (
            " (the smallest attainable: the cycle's rotations and reflections tie)"
            if p <= s.min_p_value * (1 + 1e-9) else "")
        return (f"layer {layer}: rho(cyclic) {fmt_score(s.rho_cyclic[i])}, rho(linear) "
                f"{fmt_score(s.rho_linear[i])}; cyclic beyond linear {p_text}, corrected for "
                f"{len(self.layers)} layers; circle probe {fmt_score(s.probe_score[i])} vs "
                f"shuffled order {fmt_score(s.probe_control[i])} -> {verdict}. The statistics "
                "are the same for PCA, UMAP and circle probe; the 2-D map changes only the "
                "picture.")


def load_cycle(cycle: str | Sequence[str], templates: Sequence[str] | None = None) -> Cycle:
    """A built-in cycle by name ("days", "months", "hours") or a custom list of items."""
    if isinstance(cycle, Cycle):
        return cycle
    if isinstance(cycle, str):
        data = datasets.load(cycle)
        if not isinstance(data, Cycle):
            raise ValueError(f"{cycle!r} is not a cycle; built-in cycles: days, months, hours")
        if templates is None:
            return data
        return Cycle(data.name, data.description, data.items, tuple(_check_templates(templates)))
    if templates is not None:
        _check_templates(templates)
    items = tuple(str(x).strip() for x in cycle)
    if len(items) < 4:
        raise ValueError(f"a cycle needs at least 4 items to test circularity, got {len(items)}")
    if len(set(items)) != len(items) or not all(items):
        raise ValueError("cycle items must be distinct, non-empty words")
    return Cycle("custom", "user-defined cycle", items, tuple(templates or CUSTOM_TEMPLATES))


def _check_templates(templates: Sequence[str]) -> Sequence[str]:
    for t in templates:
        if "{}" not in t:
            raise ValueError(f"template {t!r} has no '{{}}' for the item")
        if t.lstrip().startswith("{}"):
            raise ValueError(
                f"template {t!r} puts the item first: the first token is an attention sink with "
                "outsized activations that swamps distances; put a word before it"
            )
    return templates


def circular_analysis(
    session: Session,
    cycle: str | Sequence[str] = "days",
    layers: Sequence[int] | None = None,
    map_method: CircularMethod = "pca",
    inner: Inner = "euclidean",
    *,
    method: CircularMethod | None = None,
    seed: int = 0,
    n_permutations: int = 1000,
    ridge: float = 10.0,
    templates: Sequence[str] | None = None,
    progress=None,
    stats: CircularityStats | None = None,
) -> CircularAnalysis:
    """Per-layer 2-D coordinates of a cycle's examples and circularity tests.

    Each item is placed in every carrier template and read at its own (last) token.
    ``map_method`` gives the 2-D coordinates for ``layers`` (default: all): "pca" (top two
    principal components), "umap" (umap-learn, seeded) or "circle_probe" (held-out ridge
    predictions of (cos, sin) of the item angle). Statistics are computed at the same layers,
    with distances under ``inner``. ``progress(done, total)`` hears the extraction, including
    the reference activations the standardized geometry reads on first use.

    ``stats``: statistics of an earlier call with the same cycle, layers and inner product,
    reused instead of recomputed (only the coordinates are computed). The circle probe's
    held-out predictions serve both its statistics and its coordinates (one ridge fit).
    ``method=``: the old name of ``map_method`` (a DeprecationWarning; removed in 1.0).
    """
    if method is not None:
        warnings.warn("circular_analysis(method=...) is now map_method=... (the 2-D map); "
                      "method= will be removed in 1.0", DeprecationWarning, stacklevel=2)
        if map_method not in ("pca", method):
            raise TypeError(f"pass map_method= only (got map_method={map_method!r} and the "
                            f"old method={method!r})")
        map_method = method
    if map_method not in MAP_METHODS:
        raise ValueError(f"unknown map_method {map_method!r}; choose from "
                         f"{', '.join(MAP_METHODS)}")
    check_inner(inner)
    data = load_cycle(cycle, templates)
    examples = [(t.format(item), k, j) for k, item in enumerate(data.items)
                for j, t in enumerate(data.templates)]
    texts = [e[0] for e in examples]
    item_index = np.array([e[1] for e in examples])
    template_index = np.array([e[2] for e in examples])
    at = [data.items[k] for k in item_index]
    layers = session.check_layers(layers)
    acts = session.activations(texts, layers=layers, at=at, progress=progress, copy=False)
    x = torch.stack([session.geometry.residual_map(inner, layer, progress)(acts.layer(layer))
                     for layer in layers])                                   # [L, n, D]
    k = len(data.items)
    predictions = None
    if map_method == "circle_probe" or stats is None:
        predictions = circle_probe_predictions(x, item_index, template_index, k, seed=seed,
                                               ridge=ridge, with_control=stats is None)
    if stats is None:
        stats = circularity_stats(x, item_index, template_index, k, seed=seed,
                                  n_permutations=n_permutations, ridge=ridge,
                                  predictions=predictions)
    elif len(stats.rho_cyclic) != len(layers):
        raise ValueError(f"stats= holds {len(stats.rho_cyclic)} layers but {len(layers)} were "
                         "asked for: pass stats.take([...]) for the same layers")
    if map_method == "circle_probe":
        coords = list(predictions[0][0])
    else:
        coords = _coords(x, map_method, seed)
    return CircularAnalysis(
        cycle=data.name, items=data.items, texts=tuple(texts), item_index=item_index,
        template_index=template_index, layers=layers, map_method=map_method, inner=inner,
        coords=dict(zip(layers, coords)), stats=stats, seed=seed,
    )


# -- statistics -----------------------------------------------------------------------------------


def cyclic_distance(k: int) -> np.ndarray:
    i = np.arange(k)
    d = np.abs(i[:, None] - i[None, :])
    return np.minimum(d, k - d)


def circularity_stats(x: torch.Tensor, item_index: np.ndarray, template_index: np.ndarray,
                      k: int, *, seed: int = 0, n_permutations: int = 1000,
                      ridge: float = 10.0, predictions=None) -> CircularityStats:
    """Geometry test on item means plus the circle probe and its shuffled-order control.

    ``x``: examples ``[L, n, D]`` already mapped into the chosen geometry. ``predictions``:
    :func:`circle_probe_predictions` with ``with_control=True``, if already computed.
    """
    means = torch.stack([x[:, item_index == j].mean(1) for j in range(k)], 1)  # [L, k, D]
    dist = torch.cdist(means.double(), means.double()).cpu().numpy()            # [L, k, k]
    iu = np.triu_indices(k, 1)
    observed = np.stack([_rank(d[iu]) for d in dist])                           # [L, pairs]
    steps = np.arange(k)
    cyc = _rank(cyclic_distance(k)[iu])
    lin = _rank(np.abs(steps[:, None] - steps[None, :])[iu])
    rho_cyc, rho_lin = _corr(observed, cyc), _corr(observed, lin)
    # Null: item labels are exchangeable. Relabelling permutes the pairs, and ranks are
    # permutation-equivariant, so the permuted ranks are read off the observed rank matrix.
    ranks = np.zeros(dist.shape)
    ranks[:, iu[0], iu[1]] = observed
    ranks += ranks.transpose(0, 2, 1)
    perms = _permutations(k, n_permutations, seed)                              # [P, k]
    permuted = ranks[:, perms[:, iu[0]], perms[:, iu[1]]]                       # [L, P, pairs]
    null = _corr(permuted, cyc)                                                 # [L, P]
    # Every permutation (identity included) when exhaustive: p = share reaching the observed;
    # sampled: the observed labelling counts as one more draw.
    exhaustive = math.factorial(k) <= n_permutations
    extra = 0 if exhaustive else 1
    tol = 1e-9
    p_value = (extra + (null >= rho_cyc[:, None] - tol).sum(1)) / (extra + len(perms))
    # Cyclic beyond linear: d = rho_cyc - rho_lin per layer, corrected over layers by max-T on
    # each layer's d standardized by its own relabellings (layers whose nulls differ are never
    # maxed raw); a layer with d <= 0 is never called circular.
    diff = rho_cyc - rho_lin
    p_beyond = beyond_linear_p_values(diff, null - _corr(permuted, lin), extra)
    # The cycle's rotations and reflections (2k relabellings) leave rho_cyc unchanged and
    # rho_lin nearly so: a perfect circle ties with them, so no p below 2k / k! can be trusted.
    floor = min(1.0, 2 * k / math.factorial(k))
    min_p = floor if exhaustive else max(1 / (1 + len(perms)), floor)
    score, control = circle_probe_scores(x, item_index, template_index, k, seed=seed, ridge=ridge,
                                         predictions=predictions)
    return CircularityStats(
        rho_cyclic=rho_cyc, rho_linear=rho_lin, p_value=p_value,
        null_low=np.quantile(null, 0.025, axis=1), null_high=np.quantile(null, 0.975, axis=1),
        probe_score=score, probe_control=control, n_permutations=len(perms),
        p_beyond_linear=p_beyond, min_p_value=min_p,
    )


def beyond_linear_p_values(diff: np.ndarray, null: np.ndarray, extra: int = 1) -> np.ndarray:
    """Family-wise corrected p-value per layer of ``rho_cyclic - rho_linear``.

    ``diff`` ``[L]``: the observed difference; ``null`` ``[L, P]``: it under ``P`` relabellings
    (``extra=1``: sampled, the observed counts as one more draw; ``0``: exhaustive, the
    identity is among them). Each layer's statistic is standardized by the mean and spread
    of its own relabellings and compared with the relabellings' best standardized value over
    layers (max-T). A layer whose relabellings all agree cannot be tested, and a layer with
    ``diff <= 0`` (cyclic no better than linear) is never called circular: p = 1.
    """
    mu, sd = null.mean(1), null.std(1)
    live = sd > 1e-9
    safe = np.where(live, sd, 1.0)
    t = np.where(live, (diff - mu) / safe, -np.inf)
    t_null = np.where(live[:, None], (null - mu[:, None]) / safe[:, None], -np.inf).max(0)
    tol = 1e-9 * np.maximum(1.0, np.abs(t))
    p = (extra + (t_null[None] >= (t - tol)[:, None]).sum(1)) / (extra + null.shape[1])
    return np.where(live & (diff > 1e-12), p, 1.0)


def _rank(v: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as Spearman's correlation uses."""
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(len(v))
    sorted_v = v[order]
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2
        i = j + 1
    return ranks


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with ``b``."""
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean()
    return (a @ b) / np.sqrt((a * a).sum(-1) * (b @ b) + 1e-300)


def _permutations(k: int, n: int, seed: int) -> np.ndarray:
    """All permutations when there are at most ``n``, else ``n`` random ones."""
    if math.factorial(k) <= n:
        return np.array(list(itertools.permutations(range(k))))
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(k) for _ in range(n)])


def circle_probe_scores(x, item_index, template_index, k, *, seed=0, ridge=10.0,
                        predictions=None):
    """Leave-one-template-out accuracy of a ridge probe onto (cos, sin) of the item angle,
    for the true cyclic order and for a shuffled order (the control). Returns two ``[L]``."""
    if predictions is None:
        predictions = circle_probe_predictions(x, item_index, template_index, k, seed=seed,
                                               ridge=ridge, with_control=True)
    angles = 2 * np.pi * np.arange(k) / k
    scores = []
    for pred, order in predictions:
        angle = np.arctan2(pred[..., 1], pred[..., 0])                             # [L, n]
        gap = np.abs(np.angle(np.exp(1j * (angle[..., None] - angles[order]))))    # [L, n, k]
        scores.append((gap.argmin(-1) == item_index[None]).mean(1))
    return scores[0], scores[1]


def circle_probe_predictions(x, item_index, template_index, k, *, seed=0, ridge=10.0,
                             with_control=False):
    """Held-out (cos, sin) predictions ``[L, n, 2]`` for the true order (and a shuffled one).

    Returns a list of ``(predictions, order)`` where ``order[j]`` is the angle slot of item j.
    """
    n_templates = int(template_index.max()) + 1
    if n_templates < 2:
        raise ValueError("the circle probe needs at least two carrier templates")
    orders = [np.arange(k)]
    if with_control:
        rng = np.random.default_rng(seed + 1)
        shuffled = rng.permutation(k)
        while k > 2 and np.array_equal(shuffled, np.arange(k)):
            shuffled = rng.permutation(k)
        orders.append(shuffled)
    targets = []
    for order in orders:
        theta = 2 * np.pi * order[item_index] / k
        targets += [np.cos(theta), np.sin(theta)]
    train = torch.tensor(np.stack([template_index != t for t in range(n_templates)]
                                  + [np.ones(len(item_index), bool)]), device=x.device)
    values = x.float()
    fit = fit_ridge(values, np.stack(targets), train, fold_standardization(values, train),
                    ridge=ridge)
    held = fit.outputs[:, torch.as_tensor(template_index, device=x.device),
                       :, torch.arange(len(item_index), device=x.device), 0]  # [n, L, S]
    held = held.permute(1, 0, 2).cpu().numpy()                                 # [L, n, S]
    return [(held[..., 2 * i:2 * i + 2], order) for i, order in enumerate(orders)]


# -- 2-D coordinates ------------------------------------------------------------------------------


def _coords(x, map_method, seed) -> list[np.ndarray]:
    """PCA or UMAP coordinates per layer (the circle probe's come from its predictions)."""
    if map_method == "pca":
        return list(pca_2d(x))
    return [umap_2d(layer_x, seed) for layer_x in x.cpu().numpy()]


def pca_2d(x: torch.Tensor) -> np.ndarray:
    """Top-two principal component scores per layer, batched: ``[L, n, D] -> [L, n, 2]``.

    Signs are fixed so that the largest loading of each component is positive (deterministic).
    """
    centered = (x - x.mean(1, keepdim=True)).double()
    _, _, vh = torch.linalg.svd(centered, full_matrices=False)
    comps = vh[:, :2]                                                  # [L, 2, D]
    flip = torch.sign(comps.gather(2, comps.abs().argmax(2, keepdim=True)))
    scores = centered @ (comps * flip).transpose(1, 2)
    return scores.float().cpu().numpy()


def umap_2d(x: np.ndarray, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """UMAP embedding of one layer's examples (umap-learn, seeded, deterministic)."""
    import umap

    n_neighbors = max(2, min(n_neighbors, len(x) - 1))
    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, random_state=seed,
                        init="spectral", n_jobs=1)
    return reducer.fit_transform(x.astype(np.float32))


def warm_umap() -> None:
    """Compile umap-learn's numba kernels on a tiny input (the first call takes many seconds)."""
    rng = np.random.default_rng(0)
    umap_2d(rng.normal(size=(40, 8)).astype(np.float32), seed=0, n_neighbors=5)
