"""Results the views show are made by one kernel call each and carry rows() for CSV."""

import numpy as np
import torch

from reprlab import Direction, Steer, compare_steering, concept_readout, datasets
from reprlab.geometry import project_texts, token_projection


def sentiment(session, layer=2):
    return Direction.from_dataset(session, "sentiment", layer)


def test_compare_steering_matches_two_generations_with_the_same_seed(tiny):
    steer = Steer(sentiment(tiny), alpha=2.0)
    prompt = "I think the movie was"
    c = compare_steering(tiny, prompt, steer, max_new_tokens=12, seed=3, temperature=0.8)
    assert c.baseline_text == tiny.generate(prompt, 12, seed=3, temperature=0.8)
    assert c.steered_text == tiny.generate(prompt, 12, seed=3, temperature=0.8, steer=steer)
    assert len(c.changed) == len(c.steered) and c.n_changed == sum(c.changed)
    rows = c.rows()
    assert [r["kind"] for r in rows[:2]] == ["baseline", "steered"]
    assert rows[1]["text"] == c.steered_text and rows[0]["alpha"] == 2.0
    assert {r["kind"] for r in rows[2:]} == {"rose", "fell"}


def test_compare_steering_reuses_a_given_baseline_and_streams_the_steered_text(tiny):
    steer = Steer(sentiment(tiny), alpha=0.0)  # alpha 0: steered equals the baseline
    first = compare_steering(tiny, "Hello there", steer, max_new_tokens=8)
    assert first.changed == (False,) * len(first.steered) and first.n_changed == 0
    seen, forwards = [], []
    handle = tiny.model.register_forward_hook(lambda *_: forwards.append(1))
    try:
        again = compare_steering(tiny, "Hello there", steer, max_new_tokens=8,
                                 baseline=first.baseline,
                                 on_token=lambda toks, changed: seen.append(len(toks)))
    finally:
        handle.remove()
    assert again.baseline == first.baseline and seen == list(range(1, len(again.steered) + 1))
    assert len(forwards) <= 2 + len(again.steered)  # logit shift + steered stream, no baseline


def test_concept_readout_is_the_three_projections_and_rows_hold_them(tiny):
    d = sentiment(tiny)
    data = datasets.load("truth")
    other = Direction("other", torch.randn(tiny.width), 2, "test")
    r = concept_readout(tiny, d, "a fine day", data.texts, data.labels, 3, "causal",
                        compare=[other, d])
    tokens = token_projection(tiny, "a fine day", d, 3, "causal")
    texts = project_texts(tiny, d, data.texts, data.labels, 3, "causal")
    assert np.array_equal(r.tokens.values, tokens.values)
    assert np.array_equal(r.texts.values, texts.values)
    assert r.similarity.names == ("other", d.name)  # the order given
    rows = r.rows()
    assert len(rows) == len(tokens.tokens) + len(data.texts)
    assert rows[0]["kind"] == "token" and rows[-1]["kind"] == "text"
    assert rows[-1]["projection"] == float(texts.values[-1])
    assert concept_readout(tiny, d, "  ", data.texts, data.labels).tokens is None


def test_labelled_texts_from_a_data_frame():
    import pandas as pd
    import pytest

    frame = pd.DataFrame({"text": ["a b", "c d", "e f"], "label": ["x", "y", "x"],
                          "group": [1, 1, 2]})
    data = datasets.LabelledTexts.from_frame(frame)
    assert data.texts == ("a b", "c d", "e f") and data.labels == ("x", "y", "x")
    assert data.groups == (1, 1, 2) and data.classes == ("x", "y")
    assert datasets.LabelledTexts.from_frame(frame.drop(columns="group")).groups is None
    with pytest.raises(ValueError, match="missing \\['label'\\]"):
        datasets.LabelledTexts.from_frame(frame.drop(columns="label"))
    renamed = frame.rename(columns={"text": "sentence"})
    assert datasets.LabelledTexts.from_frame(renamed, text="sentence").texts == data.texts
