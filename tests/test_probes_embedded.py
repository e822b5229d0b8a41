"""Integration: probe curves on the embedded model agree with scikit-learn and beat control."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from test_probes import sklearn_scores

from reprlab import datasets, probe_curve

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def truth(smol):
    data = datasets.load("truth")
    return data, smol.activations(data.texts, progress=False)


def test_accuracy_matches_sklearn_within_two_points_per_layer(truth):
    data, acts = truth
    curve = probe_curve(acts, data.labels, groups=data.groups, control=False)
    y = np.array(data.labels)
    ref = sklearn_scores(acts.values, y, curve.fold_ids,
                         lambda: LogisticRegression(C=0.01, max_iter=5000))
    assert np.abs(curve.scores - ref).max() <= 0.02


def test_r2_matches_sklearn_ridge(smol):
    months = datasets.load("months")
    texts, items = zip(*months.examples())
    acts = smol.activations(list(texts), at=list(items), progress=False)
    target = np.array([months.items.index(m) for m in items], dtype=float)
    curve = probe_curve(acts, target, ridge=100.0, control=False)
    ref = sklearn_scores(acts.values, target, curve.fold_ids, lambda: Ridge(alpha=100.0))
    np.testing.assert_allclose(curve.scores, ref, atol=1e-3)


@pytest.mark.parametrize("name", ["sentiment", "truth"])
def test_curve_is_well_above_a_control_that_stays_at_chance(smol, name):
    data = datasets.load(name)
    acts = smol.activations(data.texts, progress=False)
    curve = probe_curve(acts, data.labels, groups=data.groups)
    assert np.all(np.abs(curve.control - curve.chance) < 0.12)
    assert curve.selectivity.max() > 0.3
    assert curve.scores[0] < 0.6  # layer 0 at the final '.' sees no content
