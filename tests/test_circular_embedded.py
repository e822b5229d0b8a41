"""Integration: circular structure of months and days on the embedded model."""

import numpy as np
import pytest

from reprlab import circular_analysis

pytestmark = pytest.mark.integration


def test_months_are_cyclic_beyond_linear_order_in_standardized_geometry(smol):
    view = circular_analysis(smol, "months", inner="standardized", n_permutations=500)
    assert view.stats.circular.sum() >= 10
    assert view.stats.p_value.min() <= 0.01


def test_standardized_geometry_reveals_days_circle_that_euclidean_misses(smol):
    euclid = circular_analysis(smol, "days", inner="euclidean", n_permutations=500)
    standard = circular_analysis(smol, "days", inner="standardized", n_permutations=500)
    mid = [i for i, layer in enumerate(euclid.layers) if 12 <= layer <= 24]
    assert standard.stats.circular[mid].sum() >= 8
    assert standard.stats.circular[mid].sum() > euclid.stats.circular[mid].sum() + 3
    gap = standard.stats.rho_cyclic[mid] - standard.stats.rho_linear[mid]
    assert np.median(gap) > 0.1
