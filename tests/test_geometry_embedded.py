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


def test_sentiment_mean_difference_separates_held_in_data(smol):
    d = Direction.from_dataset(smol, "sentiment", layer=12)
    data = datasets.load("sentiment")
    scores = d.project(smol.activations(data.texts)).cpu().numpy()
    labels = np.array(data.labels)
    threshold = (scores[labels == "positive"].mean() + scores[labels == "negative"].mean()) / 2
    accuracy = ((scores > threshold) == (labels == "positive")).mean()
    assert accuracy > 0.95
