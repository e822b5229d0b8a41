"""Inner products on representation space: euclidean, standardized, causal and whitened.

Each inner product is a linear map ``T`` into an analysis space where the plain dot product is
the inner product. Residual-stream vectors (hidden states, residual directions) map with
``T_r``; unembedding-space vectors (token output vectors, counterfactual directions) map with the
dual ``T_u = T_r^{-T}``, so the pairing ``hidden . unembedding`` (a logit) is the same in every
geometry.

- ``euclidean``: ``T_r = I``.
- ``standardized``: ``T_r = diag(1 / s_l)`` with ``s_l`` the per-dimension standard deviation of
  reference activations at layer ``l``: outlier dimensions stop dominating.
- ``causal`` (Park, Choe & Veitch, 2024): ``T_u = Cov(gamma)^{-1/2}`` whitens the unembedding
  vectors ``gamma``; ``T_r = Cov(gamma)^{1/2}``. It is defined on the unembedding space, so it
  is exact only for the final hidden state, which pairs with the unembedding. At any earlier
  layer it is an approximation that gets worse with distance from the output: on the embedded
  model it wipes out a valence signal at layers 5-10 that Euclidean projections still show.
  :func:`inner_note` says so for a given layer, and the views show that note.
- ``whitened``: ``T_r = Cov_l^{-1/2}`` with ``Cov_l`` the covariance of the reference
  activations *at the layer being read*, shrunk 10% toward its diagonal so it is invertible with
  fewer reference texts than dimensions. The data-driven counterpart of ``causal`` at every
  layer; unembedding-space vectors use the last layer's.

>>> scores = direction.project(acts, inner="causal")            # doctest: +SKIP
>>> cosine(session, d1, d2, inner="causal")                    # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import datasets
from .model_ref import ModelRef, check_same_model
from .pair_stats import cosine_null
from .sites import Site
from .types import Inner, check_inner

if TYPE_CHECKING:
    from .activations import Activations
    from .directions import Direction
    from .session import Session


@dataclass(frozen=True)
class CausalWhitening:
    """``Cov(gamma)^{-1/2}`` and ``Cov(gamma)^{1/2}`` for a model's unembedding vectors."""

    mean: torch.Tensor       # [D] mean unembedding vector
    whiten: torch.Tensor     # [D, D] Cov^{-1/2}: unembedding vectors -> causal space
    unwhiten: torch.Tensor   # [D, D] Cov^{1/2}: residual vectors -> causal space

    @classmethod
    def from_unembedding(cls, gamma: torch.Tensor, rel_floor: float = 1e-8,
                         rows_per_block: int = 4096) -> CausalWhitening:
        # float64 sums over row blocks: never a float64 copy of the whole [vocab, D] matrix
        # (about 0.45 GB for a 49k vocabulary), which would break small-memory hosts.
        g = gamma.detach()
        blocks = torch.split(g, rows_per_block)
        mean = sum(b.double().sum(0) for b in blocks) / g.shape[0]
        cov = sum((b.double() - mean).T @ (b.double() - mean) for b in blocks) / g.shape[0]
        evals, evecs = torch.linalg.eigh(cov)
        evals = evals.clamp_min(rel_floor * evals.max())
        whiten = (evecs * evals.rsqrt()) @ evecs.T
        unwhiten = (evecs * evals.sqrt()) @ evecs.T
        return cls(mean.float(), whiten.float(), unwhiten.float())

    def transform_unembedding(self, u: torch.Tensor, *, points: bool = False) -> torch.Tensor:
        """Map unembedding vectors ``[..., D]`` (points are centered first, directions not)."""
        u = u.to(self.whiten)
        return (u - self.mean if points else u) @ self.whiten  # whiten is symmetric


class Geometry:
    """Per-session cache of the maps behind each inner product.

    ``reference`` activations (all layers) give the standardized scales; by default they are
    the built-in sentiment and truth texts, read at their last token on first use.
    """

    #: shrinkage of the whitened covariance toward its diagonal
    SHRINKAGE = 0.1

    def __init__(self, session: Session, reference: Activations | None = None):
        self.session = session
        self._reference = reference
        self._causal: CausalWhitening | None = None
        self._scales: dict[int, tuple[torch.Tensor, float, torch.Tensor]] = {}
        self._whitening: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._rows: dict[int, torch.Tensor] = {}
        self._site_norms: dict[Site, float] = {}
        self._nulls: dict[tuple, tuple[float, float, str]] = {}

    def clear(self) -> None:
        """Forget every statistic derived from the weights (after they changed in place);
        a reference set with :meth:`set_reference` is kept."""
        self._causal = None
        for cache in (self._scales, self._whitening, self._rows, self._site_norms,
                      self._nulls):
            cache.clear()

    @property
    def causal(self) -> CausalWhitening:
        if self._causal is None:
            self._causal = CausalWhitening.from_unembedding(self.session.backend.unembedding)
        return self._causal

    def scale(self, layer: int, progress=None) -> torch.Tensor:
        """Per-dimension standard deviation of the reference activations at ``layer``."""
        return self._reference_stats(layer, progress)[0]

    def typical_norm(self, where: int | str | Site, progress=None) -> float:
        """Median L2 norm of the reference texts' stream at ``where`` (a hidden-state index
        or a site): steering's alpha unit there, measured on the stream an edit at that site
        changes. Sites without a hidden-state index (the last block's output before the final
        norm) are read once for this."""
        s = self.session
        where = s.site(where)
        layer = where.hidden_state(s.n_blocks)
        if layer is not None:
            return self._reference_stats(layer, progress)[1]
        if where not in self._site_norms:
            with s.without_edits():
                rows = s.read(reference_texts(), [where])[0]
            self._site_norms[where] = float(rows.norm(dim=-1).median())
        return self._site_norms[where]

    def reference_rows(self, layer: int, progress=None) -> torch.Tensor:
        """The reference activations at ``layer`` ``[texts, width]`` (float32; do not edit)."""
        self._reference_stats(layer, progress)
        return self._rows[layer]

    def reference_mean(self, layer: int, progress=None) -> torch.Tensor:
        """Mean of the reference activations at ``layer`` (the default projection origin)."""
        return self._reference_stats(layer, progress)[2]

    def whitening(self, layer: int, progress=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Cov_l^{-1/2}, Cov_l^{1/2})`` of the reference activations at ``layer``, with the
        covariance shrunk by :attr:`SHRINKAGE` toward its diagonal."""
        if layer not in self._whitening:
            self._reference_stats(layer, progress)
            x = self._rows[layer].double()
            xc = x - x.mean(0)
            cov = xc.T @ xc / max(len(x) - 1, 1)
            cov = (1 - self.SHRINKAGE) * cov + self.SHRINKAGE * torch.diag(cov.diagonal())
            evals, evecs = torch.linalg.eigh(cov)
            evals = evals.clamp_min(1e-10 * float(evals.max()) + 1e-30)
            self._whitening[layer] = (((evecs * evals.rsqrt()) @ evecs.T).float(),
                                      ((evecs * evals.sqrt()) @ evecs.T).float())
        return self._whitening[layer]

    def _reference_stats(self, layer: int, progress=None):
        if layer not in self._scales:
            ref = self._reference
            if ref is None:
                with self.session.without_edits():  # statistics of the unedited model
                    ref = self.session.activations(reference_texts(), progress=progress,
                                                   copy=False)
            for i, lay in enumerate(ref.layers):
                rows = ref.values[i].float()
                sd = rows.std(0)
                norm = float(rows.norm(dim=-1).median())
                self._scales[lay] = (sd.clamp_min(1e-6 * float(sd.max()) + 1e-12), norm,
                                     rows.mean(0))
                self._rows[lay] = rows
            if layer not in self._scales:
                raise KeyError(f"the reference activations hold no layer {layer}")
        return self._scales[layer]

    def set_reference(self, acts) -> None:
        """Use ``acts`` (all layers you need) for standardized scales and typical norms."""
        self._reference = acts
        self.clear()

    def residual_map(self, inner: Inner, layer: int, progress=None):
        """Function mapping residual vectors ``[..., D]`` at ``layer`` into the analysis space."""
        check_inner(inner)
        if inner == "euclidean":
            return lambda x: x.float()
        if inner == "causal":
            unwhiten = self.causal.unwhiten
            return lambda x: x.float().to(unwhiten) @ unwhiten
        if inner == "whitened":
            whiten = self.whitening(layer, progress)[0]
            return lambda x: x.float().to(whiten) @ whiten
        scale = self.scale(layer, progress)
        return lambda x: x.float().to(scale) / scale

    def unembedding_map(self, inner: Inner, progress=None):
        """Function mapping unembedding-space vectors into the analysis space (the dual map)."""
        check_inner(inner)
        if inner == "euclidean":
            return lambda u: u.float()
        if inner == "causal":
            return self.causal.transform_unembedding
        if inner == "whitened":
            unwhiten = self.whitening(self.session.n_blocks, progress)[1]
            return lambda u: u.float().to(unwhiten) @ unwhiten
        scale = self.scale(self.session.n_blocks, progress)
        return lambda u: u.float().to(scale) * scale

    def direction_vector(self, direction: Direction, inner: Inner, progress=None, *,
                         layer: int | None = None) -> torch.Tensor:
        """``direction`` mapped into the analysis space and normalized there. A residual
        direction maps with the geometry of ``layer`` (default its own): the layer whose rows
        it is compared with, so one number never mixes two layers' geometries."""
        direction.check_fits(self.session)
        if direction.space == "unembedding":
            v = self.unembedding_map(inner, progress)(direction.vector)
        else:
            at = direction.reading_layer(layer)
            v = self.residual_map(inner, at, progress)(direction.vector)
        return v / v.norm()

    def cosine_null(self, directions: Sequence[Direction], inner: Inner
                    ) -> tuple[float, float, str]:
        """:func:`~reprlab.pair_stats.cosine_null` for directions like these, computed once
        per inner product, space and layer (it is seeded, so a cached value is exact)."""
        first = directions[0]
        key = (inner, first.space, first.layer)
        if key not in self._nulls:
            self._nulls[key] = cosine_null(self.session, directions, inner)
        return self._nulls[key]


def reference_texts() -> list[str]:
    """The default reference set: the built-in sentiment and truth texts (standardized scales,
    whitening, typical norms and the projection origin are measured on them)."""
    return list(datasets.load("sentiment").texts) + list(datasets.load("truth").texts)


def residual_vector(session: Session, direction: Direction) -> torch.Tensor:
    """Unit residual-stream vector for ``direction`` (what steering adds).

    An unembedding-space direction is mapped to the residual stream by the causal inner
    product's Riesz map ``Cov(gamma)^-1 u`` (Park et al.), the vector that raises the concept's
    logits most per unit of causal norm.
    """
    direction.check_fits(session)
    v = direction.vector.to(session.device)
    if direction.space == "unembedding":
        causal = session.geometry.causal
        v = v @ (causal.whiten @ causal.whiten).to(v)
    return v / v.norm()



def inner_note(session: Session, inner: Inner, layer: int | None,
               direction: Direction | str | None = None) -> str:
    """What to keep in mind when reading ``layer`` under ``inner`` ("" when nothing).

    ``direction`` (a :class:`Direction` or its ``method``) lets the note say whether whitened
    geometry suits it. Measured on the embedded model (``python -m bench.whitened_valence``:
    400 single-token words of VADER's lexicon, whose valence is the mean of ten human raters,
    projected on sentiment directions from the built-in minimal pairs; Spearman rho with that
    valence):

    - probe directions: Euclidean 0.80-0.84 at layers 12-20, whitened -0.41 to -0.61 there
      (0.06-0.28 at layers 4-10, -0.18 to -0.22 at 28-30): whitening hurts them everywhere;
    - mean-difference directions: causal falls to -0.22..-0.05 at layers 6-10 (Euclidean
      0.12-0.41); whitened restores 0.17-0.36 there, about Euclidean's level (above it only at
      layers 7, 24 and 30); from layer 12 on all four inner products give 0.49-0.84.

    >>> inner_note(session, "causal", 8)                         # doctest: +SKIP
    'causal inner product at layer 8 of 30: ...'
    """
    check_inner(inner)
    # How a direction was made decides whether whitening suits it: a probe's weights are
    # already fitted against the covariance of its training activations (~Cov^-1 times a mean
    # difference), so whitening applies Cov^-1 a second time; a mean difference is a raw
    # average, which whitening turns into the discriminant direction.
    method = getattr(direction, "method", direction)
    fitted = method == "probe"
    last = session.n_blocks
    if inner == "whitened":
        if method is None:
            return ""
        if fitted:
            return (f"whitened inner product on a {method} direction: its weights are already "
                    "fitted against the activations' covariance, and whitening applies that "
                    "covariance a second time. On the embedded model this turned a sentiment "
                    "probe's agreement with human word valence from 0.80-0.84 (Euclidean, "
                    "layers 12-20) to -0.41..-0.61; read probe directions with "
                    "inner='euclidean'.")
        return ""
    if inner != "causal" or layer is None or layer >= last:
        return ""
    far = last - layer > max(2, last // 6)
    how = ("far from the output, where it can hide what Euclidean or whitened geometry shows"
           if far else "close to the output, where it is a fair approximation")
    if fitted:
        compare = ("Compare with inner='euclidean' (not 'whitened': this direction's weights "
                   "are already fitted against the covariance, and whitening them again "
                   "distorts them).")
    else:
        compare = ("Compare with inner='whitened' (estimated at this layer), which suits "
                   "mean-difference and other averaged directions; for probe directions use "
                   "'euclidean'.")
    return (f"causal inner product at layer {layer} of {last}: it is defined by the unembedding "
            f"and exact only at the last layer; here it is an approximation, {how}. " + compare)


def project(session: Session, direction: Direction, acts: Activations,
            inner: Inner = "euclidean", layer: int | None = None, progress=None, *,
            center: bool = False) -> torch.Tensor:
    """Scalar projection ``[n]`` of each row of ``acts`` (at ``layer``) on ``direction``.

    ``layer`` defaults to the direction's layer (an unembedding direction needs one, see
    :meth:`Direction.reading_layer`). Under ``causal`` an unembedding direction's projection is
    the logit difference it encodes, divided by its causal norm. ``center``: measure from the
    mean of the reference activations at ``layer`` instead of from the origin (raw hidden
    states share a large common component, so uncentred projections of opposite texts often
    have the same sign).
    """
    layer = direction.reading_layer(layer)
    check_same_model(acts, session, what="these activations")
    rows = acts.layer(layer).float()
    geometry = session.geometry
    if center:
        rows = rows - geometry.reference_mean(layer, progress).to(rows.device)
    v = geometry.direction_vector(direction, inner, progress, layer=layer)
    return geometry.residual_map(inner, layer, progress)(rows) @ v.to(rows.device)


def project_activations(direction: Direction, acts: Activations, inner: Inner = "euclidean",
                        layer: int | None = None) -> torch.Tensor:
    """:func:`project` with the session found from ``acts.source`` (what
    :meth:`Direction.project` calls); Euclidean projections need no session."""
    session = acts.session
    if session is not None:
        return project(session, direction, acts, inner, layer)
    if inner != "euclidean":
        why = ("these were built by hand" if acts.source is None else
               f"no session of {acts.model!r} (fingerprint {acts.fingerprint}) is loaded")
        raise ValueError(
            f"inner={inner!r} needs the geometry of the model that made the activations, and "
            f"{why}: make them with session.activations(...), or call "
            f"reprlab.geometry.project(session, direction, acts, inner)")
    at = direction.reading_layer(layer)
    direction.check_fits(acts.source or ModelRef.unknown(acts.width))
    return acts.layer(at).float() @ direction.vector.to(acts.values.device)


def cosine(session: Session, d1: Direction, d2: Direction, inner: Inner = "euclidean") -> float:
    """Cosine of two directions under ``inner`` (the same layer, or unembedding space)."""
    _check_comparable([d1, d2])
    g = session.geometry
    return float(g.direction_vector(d1, inner) @ g.direction_vector(d2, inner))


@dataclass(frozen=True)
class SimilarityMatrix:
    """Cosines between directions under one inner product."""

    names: tuple[str, ...]
    values: np.ndarray
    inner: str
    null_mean_abs: float | None = None   # mean |cosine| of meaningless directions
    null_high: float | None = None       # their 95% quantile
    null_what: str = ""                  # "random word pairs" or "random directions"

    def mean_abs_off_diagonal(self, groups: Sequence[str] | None = None) -> float:
        """Mean |cosine| over pairs; with ``groups``, only pairs from different groups."""
        k = len(self.names)
        mask = ~np.eye(k, dtype=bool)
        if groups is not None:
            g = np.asarray(groups)
            mask &= g[:, None] != g[None, :]
        return float(np.abs(self.values[mask]).mean()) if mask.any() else float("nan")


def similarity_matrix(session: Session, directions: Sequence[Direction],
                      inner: Inner = "euclidean", *, null: bool = True) -> SimilarityMatrix:
    """Cosine similarity of every pair of ``directions`` under ``inner``, beside the cosines
    of meaningless directions (``null=True``: random word pairs for unembedding directions,
    random directions at a layer; see :func:`reprlab.pair_stats.cosine_null`)."""
    directions = list(directions)
    if not directions:
        raise ValueError("no directions to compare: build or register some first")
    _check_comparable(directions)
    g = session.geometry
    vectors = torch.stack([g.direction_vector(d, inner) for d in directions])
    values = (vectors @ vectors.T).clamp(-1, 1).cpu().numpy()
    baseline = g.cosine_null(directions, inner) if null else (None, None, "")
    return SimilarityMatrix(tuple(d.name for d in directions), values, inner, *baseline)


def _check_comparable(directions) -> None:
    where = {d.where for d in directions}
    if len(where) > 1:
        raise ValueError(
            f"directions live in different spaces ({', '.join(sorted(where))}); compare "
            "directions at one layer, or all in unembedding space"
        )


@dataclass(frozen=True)
class TokenProjection:
    """Projection of every token of one text on a direction, at one layer."""

    text: str
    tokens: tuple[str, ...]
    values: np.ndarray
    layer: int
    inner: str
    direction: str
    centered: bool = True  # measured from the reference mean (see ``project(center=)``)

    @property
    def origin(self) -> str:
        """Where 0 is, in words (for captions)."""
        return ORIGIN[self.centered]

    def rows(self) -> list[dict]:
        return [{"kind": "token", "position": i, "text": t, "projection": float(v),
                 "layer": self.layer, "inner": self.inner, "direction": self.direction,
                 "origin": self.origin}
                for i, (t, v) in enumerate(zip(self.tokens, self.values))]


ORIGIN = {True: "0 = mean of the reference texts", False: "0 = origin, uncentred"}


def token_projection(session: Session, text: str, direction: Direction,
                     layer: int | None = None, inner: Inner = "euclidean",
                     progress=None, *, center: bool = True) -> TokenProjection:
    """Where in a sentence a concept lights up: each token's projection at ``layer``, measured
    from the reference mean (``center=False``: from the origin)."""
    layer = direction.reading_layer(layer)
    acts = session.token_activations(text, layers=[layer], copy=False)
    values = project(session, direction, acts, inner, layer, progress, center=center)
    return TokenProjection(text, acts.tokens, values.cpu().numpy(), layer, inner, direction.name,
                           center)


@dataclass(frozen=True)
class Projections:
    """Projections of labelled texts on a direction (for comparing two sets)."""

    values: np.ndarray
    labels: tuple
    texts: tuple[str, ...]
    layer: int
    inner: str
    direction: str
    centered: bool = True

    @property
    def origin(self) -> str:
        return ORIGIN[self.centered]

    def by_label(self) -> dict:
        labels = np.asarray(self.labels, dtype=object)
        return {c: self.values[labels == c] for c in dict.fromkeys(self.labels)}

    def rows(self) -> list[dict]:
        return [{"kind": "text", "text": t, "label": lab, "projection": float(v),
                 "layer": self.layer, "inner": self.inner, "direction": self.direction,
                 "origin": self.origin}
                for t, lab, v in zip(self.texts, self.labels, self.values)]


def project_texts(session: Session, direction: Direction, texts: Sequence[str],
                  labels: Sequence, layer: int | None = None, inner: Inner = "euclidean",
                  at="last", progress=None, *, center: bool = True) -> Projections:
    """Project ``texts`` (read ``at`` a position) on ``direction``, keeping their labels;
    measured from the reference mean (``center=False``: from the origin)."""
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels; pass one label per text")
    layer = direction.reading_layer(layer)
    acts = session.activations(list(texts), at=at, progress=progress, copy=False)
    values = project(session, direction, acts, inner, layer, progress, center=center)
    return Projections(values.cpu().numpy(), tuple(labels), tuple(texts), layer, inner,
                       direction.name, center)


@dataclass(frozen=True)
class ConceptReadout:
    """One direction read three ways at one layer and inner product: the tokens of a text,
    two labelled sets of texts, and its cosines with comparable directions."""

    tokens: TokenProjection | None
    texts: Projections
    similarity: SimilarityMatrix

    def rows(self) -> list[dict]:
        """Token projections of the text, then the projections of the labelled texts."""
        return (self.tokens.rows() if self.tokens is not None else []) + self.texts.rows()


def concept_readout(session: Session, direction: Direction, text: str, texts: Sequence[str],
                    labels: Sequence, layer: int | None = None, inner: Inner = "euclidean",
                    compare: Sequence[Direction] = (), progress=None) -> ConceptReadout:
    """:func:`token_projection` of ``text`` (skipped when blank), :func:`project_texts` of the
    labelled ``texts`` and the :func:`similarity_matrix` of ``compare`` (in their order; the
    direction itself is added first when missing)."""
    layer = direction.reading_layer(layer)
    tokens = token_projection(session, text, direction, layer, inner, progress) \
        if text.strip() else None
    batch = project_texts(session, direction, texts, labels, layer, inner, progress=progress)
    compare = list(compare)
    if not any(d.name == direction.name for d in compare):
        compare.insert(0, direction)
    matrix = similarity_matrix(session, compare, inner)
    return ConceptReadout(tokens, batch, matrix)
