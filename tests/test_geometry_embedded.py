"""Integration: causal geometry and concept directions on the embedded model."""

import numpy as np
import pytest
import torch

from reprlab import Direction, datasets
from reprlab.geometry import similarity_matrix

pytestmark = pytest.mark.integration


def test_causal_whitening_whitens_the_embedded_unembedding(smol):
    causal = smol.geometry.causal
    z = causal.transform_unembedding(smol.parts.unembedding, points=True).double()
    cov = z.T @ z / len(z)
    assert torch.allclose(cov, torch.eye(smol.width, dtype=torch.float64), atol=1e-3)


def test_counterfactual_concepts_are_closer_to_orthogonal_under_causal(smol):
    pairs = datasets.load("pairs")
    directions = [Direction.counterfactual(smol, p) for p in pairs.values()]
    euclid = similarity_matrix(smol, directions, "euclidean").mean_abs_off_diagonal()
    causal = similarity_matrix(smol, directions, "causal").mean_abs_off_diagonal()
    assert causal < euclid / 2, (euclid, causal)


def test_concept_cosines_sit_beside_the_random_pair_null(smol):
    # Euclidean: concepts share far more than random word pairs do (0.32 vs 0.12); causal:
    # about as orthogonal as random pairs (0.05 vs 0.04), so the drop is not all meaning.
    from reprlab.pair_stats import pair_consistency

    pairs = datasets.load("pairs")
    directions = [Direction.counterfactual(smol, p) for p in pairs.values()]
    euclid = similarity_matrix(smol, directions, "euclidean")
    causal = similarity_matrix(smol, directions, "causal")
    assert euclid.mean_abs_off_diagonal() > euclid.null_high
    assert causal.mean_abs_off_diagonal() < causal.null_high
    assert causal.null_mean_abs < euclid.null_mean_abs
    report = pair_consistency(smol, pairs, "causal")
    assert report.consistent.all() and np.all(report.split_half > 0.7)
    assert np.all(np.array(report.n_pairs) >= 25)  # every built-in pair is usable


def test_sentiment_mean_difference_separates_held_in_data(smol):
    d = Direction.from_dataset(smol, "sentiment", layer=12)
    data = datasets.load("sentiment")
    scores = d.project(smol.activations(data.texts)).cpu().numpy()
    labels = np.array(data.labels)
    threshold = (scores[labels == "positive"].mean() + scores[labels == "negative"].mean()) / 2
    accuracy = ((scores > threshold) == (labels == "positive")).mean()
    assert accuracy > 0.95


def test_default_sentence_shows_contrast_once_projections_are_centred(smol):
    # issue 16 bug 11: measured from the reference mean, "wonderful" and "terrible" take
    # opposite signs and the neutral words sit near zero
    from reprlab.geometry import token_projection

    d = Direction.from_dataset(smol, "sentiment", 15)
    text = "The movie was wonderful, but the ending was terrible."
    tp = token_projection(smol, text, d)
    values = dict(zip(tp.tokens, tp.values))
    assert tp.centered and values[" wonderful"] > 5 > -5 > values[" terrible"]
    assert abs(values[" movie"]) < 0.5 * min(values[" wonderful"], -values[" terrible"])
