"""Word-pair concepts beside their nulls, on a planted unembedding with a word-level vocabulary."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from reprlab.geometry import Geometry, cosine
from reprlab.pair_stats import (
    pair_consistency,
    pair_token_ids,
    random_pair_null,
    split_half_consistency,
    word_pool,
)

WORDS = [f"word{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(400)]


class WordTokenizer:
    """One token per known word (" wordab"), anything else splits into two."""

    def __init__(self):
        self.ids = {" " + w: i for i, w in enumerate(WORDS)}

    def __len__(self):
        return len(WORDS)

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [self.ids[text]] if text in self.ids else [0, 1]}

    def batch_decode(self, ids):
        return [" " + WORDS[i[0]] for i in ids]


def planted_session(d=48, concept_strength=3.0, seed=0):
    """Random unembedding (anisotropic) in which words 0..59 -> 60..119 differ by one vector."""
    g = torch.Generator().manual_seed(seed)
    gamma = torch.randn(len(WORDS), d, generator=g) @ torch.diag(torch.linspace(0.3, 3, d))
    concept = torch.randn(d, generator=g)
    gamma[60:120] = gamma[:60] + concept_strength * concept / concept.norm() * 3 \
        + 0.3 * torch.randn(60, d, generator=g)
    session = SimpleNamespace(tokenizer=WordTokenizer(),
                              backend=SimpleNamespace(unembedding=gamma),
                              width=d, n_blocks=2)
    session.geometry = Geometry(session)
    pairs = [(WORDS[i], WORDS[60 + i]) for i in range(60)]
    return session, pairs


def test_planted_concept_has_high_split_half_consistency_and_random_pairs_do_not():
    session, pairs = planted_session()
    for inner in ("euclidean", "causal"):
        assert split_half_consistency(session, pairs, inner).mean() > 0.9
    null = random_pair_null(session, "causal", n_pairs=25, n_directions=12)
    assert abs(null.split_half.mean()) < 0.1
    report = pair_consistency(session, {"planted": pairs}, "causal", null=null)
    assert report.consistent.tolist() == [True] and report.rows()[0]["pairs"] == 60


def test_random_pair_directions_have_near_null_causal_cosines():
    session, _ = planted_session()
    null = random_pair_null(session, "causal", n_pairs=25, n_directions=12)
    # random unit vectors in 48 dimensions: |cos| about sqrt(2 / (pi * 48)) = 0.115
    assert null.mean_abs_cosine == pytest.approx(np.sqrt(2 / (np.pi * 48)), abs=0.04)
    assert len(null.cosines) == 12 * 11


def test_pairs_that_are_not_single_tokens_are_left_out():
    session, pairs = planted_session()
    ids, skipped = pair_token_ids(session, pairs[:5] + [("two words", WORDS[3])])
    assert ids.shape == (5, 2) and skipped == [("two words", WORDS[3])]
    assert len(word_pool(session)) == len(WORDS)
    with pytest.raises(ValueError, match="at least 4"):
        split_half_consistency(session, pairs[:3])


def test_split_half_directions_agree_with_counterfactual_cosine():
    # the mean unembedding difference is what Direction.counterfactual builds
    from reprlab import Direction

    session, pairs = planted_session()
    gamma = session.backend.unembedding
    half_a = Direction("a", (gamma[60:90] - gamma[:30]).mean(0), None, "t", space="unembedding")
    half_b = Direction("b", (gamma[90:120] - gamma[30:60]).mean(0), None, "t",
                       space="unembedding")
    assert cosine(session, half_a, half_b, "causal") > 0.9
