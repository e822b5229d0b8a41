"""Integration: circular structure of months and days on the embedded model."""

import numpy as np
import pytest

from toolkit import circular_view

pytestmark = pytest.mark.integration


def test_months_are_cyclic_beyond_linear_order_in_standardized_geometry(smol):
    view = circular_view(smol, "months", inner="standardized", n_permutations=500)
    assert view.stats.circular.sum() >= 10
    assert view.stats.p_value.min() <= 0.01


def test_outlier_dimensions_wash_out_euclidean_structure_in_late_layers(smol):
    euclid = circular_view(smol, "days", inner="euclidean", n_permutations=200)
    standard = circular_view(smol, "days", inner="standardized", n_permutations=200)
    late = [i for i, layer in enumerate(euclid.layers) if 12 <= layer < 30]
    assert np.mean(standard.stats.rho_cyclic[late]) > np.mean(euclid.stats.rho_cyclic[late]) + 0.05
