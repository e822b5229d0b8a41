"""Integration: sentiment steering on the embedded model."""

import numpy as np
import pytest

from reprlab import Direction, Steer, logit_shift
from reprlab.steering import word_ids

pytestmark = pytest.mark.integration

POSITIVE = ["great", "good", "wonderful", "amazing", "excellent", "fantastic", "happy", "perfect"]
NEGATIVE = ["terrible", "bad", "awful", "horrible", "boring", "disappointing", "sad", "poor"]
PROMPTS = ["I think the movie was", "The food at this place is", "My day has been",
           "Honestly, the book was", "The concert last night was"]


def log_odds_change(smol, steer):
    pos, neg = word_ids(smol, POSITIVE), word_ids(smol, NEGATIVE)
    changes = []
    for prompt in PROMPTS:
        shift = logit_shift(smol, prompt, steer)
        (pb, pa), (nb, na) = shift.total_probability(pos), shift.total_probability(neg)
        changes.append(np.log(pa / na) - np.log(pb / nb))
    return float(np.mean(changes))


@pytest.fixture(scope="module")
def sentiment(smol):
    return Direction.from_dataset(smol, "sentiment", layer=10)


def test_positive_alpha_raises_positive_words_over_negative(smol, sentiment):
    up = log_odds_change(smol, Steer(sentiment, alpha=0.25))
    down = log_odds_change(smol, Steer(sentiment, alpha=-0.25))
    assert up > 0.5 and down < -0.5, (up, down)


def test_ablation_zeroes_the_projection_at_that_layer(smol, sentiment):
    from reprlab.steering import steering_edits

    with smol.hooks(edits=steering_edits(smol, Steer(sentiment, mode="ablate"))):
        acts = smol.activations(PROMPTS, layers=[10], cache=False)
    before = smol.activations(PROMPTS, layers=[10], cache=False)
    assert np.abs(sentiment.project(before).numpy()).min() > 1.0
    assert np.abs(sentiment.project(acts).numpy()).max() < 1e-3


def test_alpha_zero_reproduces_plain_generation(smol, sentiment):
    plain = smol.generate(PROMPTS[0], 20, temperature=0.8, seed=3)
    assert smol.generate(PROMPTS[0], 20, temperature=0.8, seed=3,
                         steer=Steer(sentiment, alpha=0.0)) == plain
