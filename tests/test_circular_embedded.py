"""Integration: circular structure of months and days on the embedded model."""

import numpy as np
import pytest

from reprlab import circular_analysis

pytestmark = pytest.mark.integration


ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
            "ninth", "tenth", "eleventh", "twelfth"]
NOUNS = ["apple", "river", "chair", "cloud", "pencil", "garden", "window", "bottle", "mirror",
         "ladder", "candle", "basket"]


def test_a_linear_sequence_is_never_called_circular_though_its_cyclic_p_is_tiny(smol):
    view = circular_analysis(smol, ORDINALS, inner="standardized", n_permutations=500)
    assert (view.stats.p_value < 0.01).sum() >= 25  # rho(cyclic) alone looks significant
    assert not view.stats.circular.any() and view.stats.p_beyond_linear.min() > 0.5


def test_unrelated_nouns_are_not_called_circular(smol):
    view = circular_analysis(smol, NOUNS, inner="standardized", n_permutations=500)
    assert not view.stats.circular.any()


def test_months_and_days_lean_cyclic_but_are_rarely_shown_circular_beyond_linear(smol):
    # What the embedded model shows, measured: distances follow cyclic order better than
    # linear order in the middle layers, but after correcting for 31 layers the difference is
    # significant at most at a layer or two (months) and nowhere for days.
    months = circular_analysis(smol, "months", inner="standardized", n_permutations=500)
    days = circular_analysis(smol, "days", inner="standardized", n_permutations=500)
    mid = [i for i, layer in enumerate(months.layers) if 12 <= layer <= 24]
    assert np.median(months.stats.rho_difference[mid]) > 0.05
    assert np.median(days.stats.rho_difference[mid]) > 0.1
    assert months.stats.circular.sum() <= 3 and not days.stats.circular.any()
    assert days.stats.min_p_value == pytest.approx(14 / 5040)
