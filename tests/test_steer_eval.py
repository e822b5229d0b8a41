"""Steering measured by what the text says (a held-out judge) beside fluency, on a tiny model."""

import numpy as np
import pytest
import torch

from reprlab import datasets
from reprlab.datasets import LabelledTexts
from reprlab.steer_eval import (
    SteeringEffect,
    direction_from,
    fit_judge,
    perplexity,
    steering_effect,
)


def word_data(n=24):
    texts, labels, groups = [], [], []
    for i in range(n):
        for word, label in (("apple", "positive"), ("stone", "negative")):
            texts.append(f"number {i} is {word}")
            labels.append(label)
            groups.append(f"g{i}")
    return LabelledTexts("words", "test", tuple(texts), tuple(labels), tuple(groups))


def test_split_keeps_groups_whole_and_disjoint():
    a, b = datasets.load("sentiment").split(seed=1)
    assert not set(a.groups) & set(b.groups) and len(a) + len(b) == 240
    assert set(a.labels) == {"positive", "negative"}


def test_judge_reads_held_out_text_and_scores_new_text_in_the_right_direction(tiny):
    build, held = word_data().split()
    judge = fit_judge(tiny, held, layer=0)
    assert judge.heldout_accuracy > 0.9 and judge.p_value < 0.05
    scores = judge.score(tiny, ["number 99 is apple", "number 99 is stone"])
    assert scores[0] > 0.5 > scores[1]


def test_perplexity_matches_an_independent_forward(tiny):
    prompt, new = tiny.tokenizer("hello")["input_ids"], tiny.tokenizer(" world")["input_ids"]
    ids = torch.tensor([prompt + new])
    with torch.no_grad():
        logits = tiny.model(input_ids=ids).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    nll = -np.mean([float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(new)])
    assert perplexity(tiny, prompt, new) == pytest.approx(np.exp(nll), rel=1e-4)


def test_steering_effect_compares_each_alpha_with_the_unsteered_run(tiny):
    data = word_data()
    build, held = data.split()
    d = direction_from(tiny, build, layer=2)
    judge = fit_judge(tiny, held, layer=0)
    effect = steering_effect(tiny, d, ["number 5 is", "we saw"], alphas=(-4.0, 4.0),
                             judge=judge, max_new_tokens=4)
    assert list(effect.alphas) == [-4.0, 0.0, 4.0]  # alpha 0 is always measured
    assert effect.scores.shape == (3, 2) and effect.perplexity.shape == (3, 2)
    assert effect.effect[effect.baseline_index] == 0 and effect.fluency_cost[1] == 1
    plain = [tiny.generate(p, max_new_tokens=4) for p in ("number 5 is", "we saw")]
    assert list(effect.texts[1]) == plain  # the baseline is plain generation, same seed
    assert len(effect.rows()) == 3 and "alpha +4" in effect.summary()


def test_sign_flip_p_value_is_small_only_for_a_consistent_shift():
    base = np.zeros((1, 12))
    shifted = np.vstack([base, np.full((1, 12), 0.2), np.tile([0.2, -0.2], 6)[None]])
    e = SteeringEffect("d", 1, np.array([0.0, 1.0, 2.0]), ("p",) * 12, (), shifted,
                       np.ones((3, 12)), "judge", 0)
    p = e.p_values
    assert p[0] == 1.0 and p[1] == pytest.approx(2 / 2**12) and p[2] > 0.5
    few = SteeringEffect("d", 1, np.array([0.0, 1.0]), ("p",) * 6, (), shifted[:2, :6],
                         np.ones((2, 6)), "judge", 0)
    assert few.p_values[1] == pytest.approx(2 / 64)  # exact: the floor with six prompts
