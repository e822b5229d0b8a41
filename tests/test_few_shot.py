"""Few-shot prompts with correct, flipped and random demonstration labels, and the lens's label
accuracy per layer: prompts checked against the data they came from, accuracy against the
model's own logits, the bootstrap against scipy, the parting layer on planted outcomes."""

import numpy as np
import pytest
import torch
from scipy import stats

from reprlab import Session, datasets
from reprlab.few_shot import (
    TASKS,
    LabelAccuracy,
    bootstrap_interval,
    few_shot_prompts,
    label_accuracy,
    parting_layer,
)


def _demos(prompt: str, task: str) -> list[tuple[str, str]]:
    """(text, shown label) of each demonstration of a prompt."""
    template, words = TASKS[task]
    head, tail = template.split("{}")
    out = []
    for block in prompt.split("\n\n")[:-1]:
        body = block[len(head):]
        text, shown = body.split(tail)
        out.append((text, next(k for k, w in words.items() if w == shown)))
    return out


@pytest.mark.parametrize("task", sorted(TASKS))
def test_demonstrations_are_held_apart_and_labelled_as_the_condition_says(task):
    data = datasets.load(task)
    group = dict(zip(data.texts, data.groups, strict=True))
    truth = dict(zip(data.texts, data.labels, strict=True))
    shown = {}
    for condition in ("correct", "flipped", "random"):
        p = few_shot_prompts(task, condition, n_queries=30, shots=4, seed=3)
        assert len(p.texts) == 30 and len(set(p.texts)) == 30
        demos = [_demos(t, task) for t in p.texts]
        query_groups = {group[t.split("\n\n")[-1][len(TASKS[task][0].split("{}")[0]):]
                              .split(TASKS[task][0].split("{}")[1])[0]] for t in p.texts}
        assert not query_groups & {group[t] for d in demos for t, _ in d}  # held apart
        agree = [truth[t] == y for d in demos for t, y in d]
        shown[condition] = demos
        if condition == "correct":
            assert all(agree)
        elif condition == "flipped":
            assert not any(agree)
        else:
            assert 0.3 < np.mean(agree) < 0.7
    # the same queries and demonstration texts under every condition: only labels differ
    texts = {c: [[t for t, _ in d] for d in v] for c, v in shown.items()}
    assert texts["correct"] == texts["flipped"] == texts["random"]


def test_label_accuracy_matches_the_logits_on_a_model_whose_labels_are_single_tokens():
    """With word-level label tokens (the embedded tokenizer) the output layer's choice is the
    argmax of the model's logits over the two label tokens."""
    s = Session.tiny(seed=0)
    p = few_shot_prompts("sentiment", "correct", n_queries=6, shots=1)
    # relabel with one-character "tokens" the tiny tokenizer has
    p = type(p)(p.task, p.condition, p.texts, p.labels, {"negative": "n", "positive": "p"},
                p.shots, p.seed)
    acc = label_accuracy(s, p, n_boot=100)
    n_id, p_id = (s.tokenizer(x, add_special_tokens=False)["input_ids"][0] for x in "np")
    for q, text in enumerate(p.texts):
        ids = torch.tensor([s.tokenizer(text)["input_ids"]])
        with torch.no_grad():
            logits = s.model(ids).logits[0, -1]
        choice = "positive" if logits[p_id] > logits[n_id] else "negative"
        assert bool(acc.correct[-1, q]) == (choice == p.labels[q])
    assert acc.correct.shape == (s.n_blocks + 1, 6)
    assert ((acc.low <= acc.accuracy + 1e-9) & (acc.accuracy <= acc.high + 1e-9)).all()
    assert len(acc.rows()) == s.n_blocks + 1 and "6 queries" in acc.summary()


def test_the_bootstrap_interval_agrees_with_scipy():
    rng = np.random.default_rng(0)
    values = (rng.random(200) < 0.7).astype(float)
    low, high = bootstrap_interval(values[None], n_boot=4000, seed=1)
    ref = stats.bootstrap((values,), np.mean, n_resamples=4000, method="percentile",
                          random_state=1).confidence_interval
    assert low[0] == pytest.approx(ref.low, abs=0.015)
    assert high[0] == pytest.approx(ref.high, abs=0.015)


def test_the_parting_layer_is_where_one_condition_pulls_ahead_for_good():
    layers = tuple(range(6))
    a = torch.zeros(6, 80, dtype=torch.bool)
    b = torch.zeros(6, 80, dtype=torch.bool)
    a[1, :60] = True   # a blip at layer 1, then even at layer 2
    a[3:, :70] = True  # ahead for good from layer 3
    b[3:, :20] = True

    def acc(c):
        z = torch.zeros(6)
        return LabelAccuracy(None, "t", "x", "logit", layers, c, z, z, z)

    assert parting_layer(acc(a), acc(b)) == 3
    assert parting_layer(acc(b), acc(a)) is None


def test_bad_tasks_and_conditions_name_the_choices():
    with pytest.raises(ValueError, match="sentiment"):
        few_shot_prompts("nope", "correct")
    with pytest.raises(ValueError, match="flipped"):
        few_shot_prompts("truth", "permuted")
