"""Word-pair concepts beside their nulls: split-half consistency and random-pair cosines.

A counterfactual direction (:meth:`Direction.counterfactual`) is the mean unembedding difference
of word pairs such as (king, queen). Two checks say whether it is a direction at all:

- **split-half consistency**: the cosine between the directions of two random halves of the
  pairs, averaged over splits. A concept whose halves disagree is not a direction.
- **random-pair null**: the same numbers for pairs of random vocabulary words. Cosines between
  concepts (Park et al. report them falling under the causal inner product) mean something only
  beside the cosines that meaningless pairs give.

>>> report = pair_consistency(session, datasets.load("pairs"), inner="causal")  # doctest: +SKIP
>>> report.rows()[0]                                                            # doctest: +SKIP
{'concept': 'male_female', 'pairs': 27, 'split_half': 0.71, 'null_split_half': 0.05, ...}
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .tokens import word_token_ids
from .types import Inner, check_inner

if TYPE_CHECKING:
    from .session import Session

WORD = re.compile(r"^ [a-z]{3,}$")


def pair_token_ids(session: Session, pairs: Sequence) -> tuple[np.ndarray, list[tuple]]:
    """Token ids ``[n, 2]`` of the pairs whose words are both one in-sentence token
    (``" word"``), and the pairs left out."""
    pairs = list(pairs.pairs if hasattr(pairs, "pairs") else pairs)
    ids, skipped = [], []
    for a, b in pairs:
        ta, tb = word_token_ids(session.tokenizer, (a, b))
        if ta is None or tb is None:
            skipped.append((a, b))
        else:
            ids.append((ta, tb))
    return np.array(ids, dtype=np.int64).reshape(-1, 2), skipped


def word_pool(session: Session) -> np.ndarray:
    """Ids of vocabulary tokens that are a space plus a lowercase word of 3+ letters (the
    random words for the null), computed once per session."""
    cached = getattr(session, "_pair_word_pool", None)
    if cached is None:
        tok = session.tokenizer
        vocab = min(len(tok), session.backend.unembedding.shape[0])
        words = tok.batch_decode([[i] for i in range(vocab)])
        cached = np.array([i for i, w in enumerate(words) if WORD.match(w)], dtype=np.int64)
        session._pair_word_pool = cached
    return cached


def _differences(session: Session, ids: np.ndarray, inner: Inner) -> torch.Tensor:
    """Unembedding differences ``gamma(b) - gamma(a)`` mapped into ``inner``'s space."""
    gamma = session.backend.unembedding.detach()
    idx = torch.as_tensor(ids, device=gamma.device)
    diffs = (gamma[idx[:, 1]] - gamma[idx[:, 0]]).float()
    return session.geometry.unembedding_map(inner)(diffs)


def _split_half(diffs: torch.Tensor, n_splits: int, rng) -> np.ndarray:
    """Cosine of the mean differences of two random halves, for ``n_splits`` splits."""
    n = len(diffs)
    out = []
    for _ in range(n_splits):
        order = rng.permutation(n)
        a, b = diffs[order[: n // 2]].mean(0), diffs[order[n // 2:]].mean(0)
        out.append(float(a @ b / (a.norm() * b.norm() + 1e-30)))
    return np.array(out)


def split_half_consistency(session: Session, pairs, inner: Inner = "causal", *,
                           n_splits: int = 50, seed: int = 0) -> np.ndarray:
    """Split-half cosines ``[n_splits]`` of a pair set's direction under ``inner``."""
    check_inner(inner)
    ids, _ = pair_token_ids(session, pairs)
    if len(ids) < 4:
        raise ValueError(f"{len(ids)} usable pairs: split-half consistency needs at least 4 "
                         "pairs whose words are single tokens")
    return _split_half(_differences(session, ids, inner), n_splits, np.random.default_rng(seed))


@dataclass(frozen=True)
class RandomPairNull:
    """What meaningless word pairs give: cosines between directions of random pairs, and their
    split-half consistency (pairs per direction as in the concepts compared)."""

    inner: str
    n_pairs: int
    cosines: np.ndarray      # off-diagonal cosines between random-pair directions
    split_half: np.ndarray   # split-half cosines of random-pair sets

    @property
    def mean_abs_cosine(self) -> float:
        return float(np.abs(self.cosines).mean())

    @property
    def high_abs_cosine(self) -> float:
        """95% quantile of |cosine| between random-pair directions."""
        return float(np.quantile(np.abs(self.cosines), 0.95))


def random_pair_null(session: Session, inner: Inner = "causal", *, n_pairs: int = 25,
                     n_directions: int = 20, n_splits: int = 10, seed: int = 0) -> RandomPairNull:
    """Directions from ``n_directions`` sets of ``n_pairs`` random vocabulary word pairs."""
    check_inner(inner)
    rng = np.random.default_rng(seed)
    pool = word_pool(session)
    if len(pool) < 4 * n_pairs:
        raise ValueError(f"the vocabulary has only {len(pool)} plain lowercase word tokens")
    vectors, halves = [], []
    for _ in range(n_directions):
        ids = rng.choice(pool, size=(n_pairs, 2), replace=False)
        diffs = _differences(session, ids, inner)
        vectors.append(diffs.mean(0) / diffs.mean(0).norm())
        halves.append(_split_half(diffs, n_splits, rng))
    v = torch.stack(vectors)
    cos = (v @ v.T).cpu().numpy()
    off = cos[~np.eye(len(cos), dtype=bool)]
    return RandomPairNull(inner, n_pairs, off, np.concatenate(halves))


@dataclass(frozen=True)
class PairConsistency:
    """Per concept: usable pairs, split-half consistency, beside the random-pair null."""

    inner: str
    concepts: tuple[str, ...]
    n_pairs: tuple[int, ...]
    split_half: np.ndarray        # mean split-half cosine per concept
    split_half_low: np.ndarray    # 5% quantile over splits
    null: RandomPairNull

    @property
    def consistent(self) -> np.ndarray:
        """Concepts whose halves agree beyond what random pairs ever reach (their 99%)."""
        return self.split_half_low > np.quantile(self.null.split_half, 0.99)

    def rows(self) -> list[dict]:
        return [{"concept": c, "pairs": n, "inner": self.inner,
                 "split_half": round(float(s), 3), "split_half_5%": round(float(lo), 3),
                 "null_split_half": round(float(self.null.split_half.mean()), 3),
                 "null_split_half_99%": round(float(np.quantile(self.null.split_half, 0.99)), 3),
                 "consistent": bool(ok)}
                for c, n, s, lo, ok in zip(self.concepts, self.n_pairs, self.split_half,
                                           self.split_half_low, self.consistent)]


def pair_consistency(session: Session, concepts: Mapping[str, Sequence] | Sequence,
                     inner: Inner = "causal", *, n_splits: int = 50, seed: int = 0,
                     null: RandomPairNull | None = None) -> PairConsistency:
    """Split-half consistency of each concept's pairs, with the random-pair null beside it.

    ``concepts``: ``{name: pairs}`` (e.g. ``datasets.load("pairs")``) or one list of pairs.
    """
    if not isinstance(concepts, Mapping):
        concepts = {getattr(concepts, "name", "pairs"): concepts}
    names, counts, means, lows = [], [], [], []
    for name, pairs in concepts.items():
        cos = split_half_consistency(session, pairs, inner, n_splits=n_splits, seed=seed)
        names.append(name)
        counts.append(len(pair_token_ids(session, pairs)[0]))
        means.append(cos.mean())
        lows.append(np.quantile(cos, 0.05))
    if null is None:
        null = random_pair_null(session, inner, n_pairs=int(np.median(counts)), seed=seed)
    return PairConsistency(inner, tuple(names), tuple(counts), np.array(means), np.array(lows),
                           null)


def cosine_null(session: Session, directions: Sequence, inner: Inner = "causal", *,
                n_directions: int = 20, seed: int = 0) -> tuple[float, float, str]:
    """What cosines between meaningless directions look like, for a similarity matrix.

    Unembedding-space directions: directions from random vocabulary word pairs (25 each).
    Directions at a layer: random Gaussian directions at that layer mapped into ``inner``.
    Returns ``(mean |cosine|, 95% quantile of |cosine|, what the null is)``.
    """
    check_inner(inner)
    first = directions[0]
    unembedding = first.space == "unembedding"
    if unembedding and len(word_pool(session)) >= 100:
        null = random_pair_null(session, inner, n_directions=n_directions, seed=seed)
        return null.mean_abs_cosine, null.high_abs_cosine, "random word pairs"
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(n_directions, session.width, generator=g)
    geometry = session.geometry
    v = geometry.unembedding_map(inner)(raw) if unembedding else \
        geometry.residual_map(inner, first.layer)(raw)
    v = v / v.norm(dim=1, keepdim=True)
    cos = (v @ v.T).cpu().numpy()
    off = np.abs(cos[~np.eye(n_directions, dtype=bool)])
    return float(off.mean()), float(np.quantile(off, 0.95)), "random directions"
