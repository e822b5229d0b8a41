"""Issue 21: steering judged on prompts nobody tuned it on, the judge checked against an
outside lexicon, and old API names that point to the new ones."""

import inspect

import numpy as np
import pytest
import torch

import reprlab
from reprlab import datasets, probe_curve
from reprlab.steer_eval import (
    SteeringEffect,
    _ranks,
    direction_from,
    fit_judge,
    judge_agreement,
    steering_effect,
)

# -- old names point to new ones (until 1.0) ------------------------------------------------------


@pytest.mark.parametrize("old, new", [("circular_view", "circular_analysis"),
                                      ("CircularView", "CircularAnalysis"),
                                      ("hooks", "reprlab.backends"),
                                      ("architecture", "reprlab.backends.architecture")])
def test_a_renamed_module_attribute_names_its_new_name(old, new):
    with pytest.raises(AttributeError, match=new) as info:
        getattr(reprlab, old)
    assert info.value.name == old
    assert not hasattr(reprlab, old)          # hasattr still answers False


def test_every_new_name_in_the_rename_table_exists():
    for old, new in reprlab.RENAMED.items():
        target = new.split()[0]
        assert target.startswith("reprlab"), (old, new)
        parts = target.split(".")[1:]
        obj = reprlab
        for part in parts:
            obj = getattr(obj, part) if hasattr(obj, part) else __import__(
                f"{obj.__name__}.{part}", fromlist=["_"])
        assert obj is not None


def test_an_unknown_attribute_still_raises_plainly():
    with pytest.raises(AttributeError, match="no attribute 'no_such_thing'$"):
        _ = reprlab.no_such_thing


def test_widgets_still_load_lazily():
    assert reprlab.widgets.__name__ == "reprlab.widgets"


def _acts(tiny):
    return tiny.activations([f"text {i}" for i in range(12)], layers=[0, 1])


def test_probe_curve_alpha_names_ridge(tiny):
    with pytest.raises(TypeError, match=r"alpha=.*renamed.*ridge="):
        probe_curve(_acts(tiny), [float(i) for i in range(12)], alpha=10.0)


def test_probe_curve_n_shuffles_names_n_permutations(tiny):
    with pytest.raises(TypeError, match=r"n_shuffles=.*renamed.*n_permutations="):
        probe_curve(_acts(tiny), ["a", "b"] * 6, n_shuffles=3)


def test_probe_curve_old_keywords_fail_today_and_new_ones_exist():
    params = inspect.signature(probe_curve).parameters
    assert "ridge" in params and "n_permutations" in params
    assert "alpha" not in params and "n_shuffles" not in params


def test_the_new_keywords_still_work(tiny):
    curve = probe_curve(_acts(tiny), ["a", "b"] * 6, folds=3, n_permutations=5)
    assert np.isfinite(curve.scores).all()


# -- the prompt set -------------------------------------------------------------------------------

JUDGE_FRAMES = [r"^The \w+( \w+)? was\b", r"^I thought the", r"^Honestly, the \w+ felt",
                r"^Everyone agreed that", r"^Our \w+ yesterday was", r"^For me, the"]


def test_the_prompt_set_has_thirty_neutral_prompts_of_several_kinds():
    import re

    prompts = datasets.load("prompts")
    assert len(prompts) >= 30 and len(set(prompts.texts)) == len(prompts)
    kinds = set(prompts.kinds)
    assert len(kinds) >= 5 and all(len(prompts.of_kind(k)) >= 5 for k in kinds)
    sentiment = datasets.load("sentiment")
    # the sentiment words are the last word of each minimal pair's sentences
    words = {t.rstrip(".").split()[-1] for t in sentiment.texts if " was " in t and
             t.count(" ") <= 4}
    assert {"wonderful", "terrible"} <= words
    for text in prompts.texts:
        assert not any(re.search(f, text) for f in JUDGE_FRAMES), text
        assert not set(re.findall(r"[a-z]+", text.lower())) & words, text


# -- intervals, kinds and a second judge ---------------------------------------------------------


def effect_of(scores, kinds=None, alphas=(0.0, 1.0)):
    scores = np.asarray(scores, float)
    n = scores.shape[1]
    return SteeringEffect("d", 1, np.array(alphas), tuple(f"p{i}" for i in range(n)),
                          tuple(tuple(f"t{a}{i}" for i in range(n)) for a in alphas), scores,
                          np.ones_like(scores), "TextJudge(x)", 0, kinds=kinds)


def test_the_bootstrap_interval_holds_a_consistent_shift_and_straddles_noise():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.1, 40)
    shifted = effect_of([np.zeros(40), 0.2 + noise])
    low, high = shifted.intervals()[1]
    assert 0 < low < shifted.effect[1] < high and high - low < 0.1
    null = effect_of([np.zeros(40), noise - noise.mean()])
    low, high = null.intervals()[1]
    assert low < 0 < high
    assert shifted.intervals(level=0.5)[1, 1] - shifted.intervals(level=0.5)[1, 0] < high - low


def test_by_kind_reports_all_prompts_and_each_kind_with_its_interval():
    kinds = ("a",) * 10 + ("b",) * 10
    e = effect_of([np.zeros(20), np.r_[np.full(10, 0.3), np.tile([0.1, -0.1], 5)]], kinds)
    table = e.by_kind()
    assert [r["kind"] for r in table.rows()] == ["all", "a", "b"]
    assert table.row(1.0)["effect"] == pytest.approx(e.effect[1])
    a, b = table.row(1.0, "a"), table.row(1.0, "b")
    assert a["ci_low"] > 0 and a["p_value"] < 0.01 and "more positive" in table.summary()
    assert b["ci_low"] < 0 < b["ci_high"] and b["p_value"] > 0.5 and b["prompts"] == 10
    with pytest.raises(KeyError):
        table.row(2.0)


def test_ranks_average_ties_like_scipy():
    from scipy.stats import rankdata

    x = np.array([0.0, 0.5, 0.0, -1.0, 0.5, 0.0, 2.0])
    assert np.allclose(_ranks(x), rankdata(x))


def test_agreement_of_a_judge_with_itself_and_with_its_mirror():
    rng = np.random.default_rng(0)
    e = effect_of([rng.normal(0, 0.1, 30), rng.normal(0.3, 0.1, 30)])
    same = judge_agreement(e, e.rescored(e.scores * 2 + 1, "scaled"))
    assert same.pooled_pearson == pytest.approx(1) and same.same_verdict.all()
    mirror = judge_agreement(e, e.rescored(-e.scores, "mirror"))
    assert mirror.pooled_spearman == pytest.approx(-1)
    assert not mirror.same_verdict.any()       # both significant, opposite signs
    flat = judge_agreement(e, e.rescored(rng.normal(0, 0.1, (2, 30)), "noise"))
    assert not flat.same_verdict[0] and "same verdict" in flat.summary()
    with pytest.raises(ValueError, match="shape"):
        e.rescored(np.zeros((3, 30)), "bad")


def test_steering_effect_takes_a_prompt_set_and_keeps_its_kinds(tiny):
    texts, labels, groups = [], [], []
    for i in range(16):
        for word, label in (("apple", "positive"), ("stone", "negative")):
            texts.append(f"number {i} is {word}")
            labels.append(label)
            groups.append(f"g{i}")
    data = datasets.LabelledTexts("w", "t", tuple(texts), tuple(labels), tuple(groups))
    build, held = data.split()
    prompts = datasets.PromptSet("p", "", ("we saw", "number 5 is", "it was"), ("x", "y", "y"))
    effect = steering_effect(tiny, direction_from(tiny, build, 2), prompts, alphas=(3.0,),
                             judge=fit_judge(tiny, held, layer=0), max_new_tokens=3)
    assert effect.kinds == ("x", "y", "y") and effect.prompts == prompts.texts
    assert [r["kind"] for r in effect.by_kind().rows()] == ["all", "x", "y"]
    with pytest.raises(ValueError, match="kinds"):
        steering_effect(tiny, direction_from(tiny, build, 2), ["a b"], kinds=["x", "y"],
                        judge=fit_judge(tiny, held, layer=0))


# -- whitened geometry's caveat ------------------------------------------------------------------


def test_inner_note_warns_against_whitening_a_probe_direction(tiny):
    from reprlab import Direction
    from reprlab.geometry import inner_note

    probe = Direction("p", torch.ones(tiny.width), 1, "probe")
    mean_diff = Direction("m", torch.ones(tiny.width), 1, "mean_difference")
    note = inner_note(tiny, "whitened", 1, probe)
    assert "second time" in note and "inner='euclidean'" in note
    assert inner_note(tiny, "whitened", 1, "probe") == note
    assert inner_note(tiny, "whitened", 1, mean_diff) == ""
    assert inner_note(tiny, "whitened", 1) == ""          # no direction: nothing to say
    causal_probe = inner_note(tiny, "causal", 0, probe)
    assert "inner='euclidean'" in causal_probe and "not 'whitened'" in causal_probe
    assert "Compare with inner='whitened'" in inner_note(tiny, "causal", 0, mean_diff)


@pytest.mark.integration
def test_whitening_hurts_a_probe_direction_and_helps_a_mean_difference_over_causal(smol):
    """The numbers inner_note quotes, on a smaller sample (150 VADER words, two layers)."""
    pytest.importorskip("vaderSentiment")
    from bench.whitened_valence import measure

    out = measure(smol, [8, 14], n_words=150)
    probe_e, probe_w = out[("probe", "euclidean")], out[("probe", "whitened")]
    md_w, md_c = out[("mean_difference", "whitened")], out[("mean_difference", "causal")]
    assert probe_e[1] > 0.6 and probe_w[1] < probe_e[1] - 0.4   # layer 14
    assert md_w[0] > md_c[0] + 0.15                               # layer 8: causal's gap
