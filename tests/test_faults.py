"""Tests that catch specific faults (issue 13 item 7): each names the breakage it catches."""

import threading

import numpy as np
import pytest
import torch

from reprlab import Direction, Steer
from reprlab.cache import ActivationCache
from reprlab.steering import (
    alpha_sweep,
    next_token_probs,
    residual_vector,
    steering_edits,
    word_ids,
)


@pytest.fixture
def direction(tiny):
    g = torch.Generator().manual_seed(0)
    return Direction("d", torch.randn(tiny.width, generator=g), 2, "test")


def test_two_add_steers_on_one_layer_add_up(tiny, direction):
    """Catches: dropping the "add" step when a Steer list holds more than one steer."""
    other = Direction("e", torch.randn(tiny.width, generator=torch.Generator().manual_seed(1)),
                      2, "test")
    unit = Steer(direction, alpha=1.0).unit(tiny)
    base = tiny.activations(["hello"], layers=[2], cache=False).layer(2)[0]
    both = [Steer(direction, alpha=0.5), Steer(other, alpha=0.25)]
    with tiny.hooks(edits=steering_edits(tiny, both)):
        moved = tiny.activations(["hello"], layers=[2], cache=False).layer(2)[0]
    expected = unit * (0.5 * direction.vector + 0.25 * other.vector)
    assert torch.allclose(moved - base, expected, atol=1e-5)
    split = next_token_probs(tiny, "hello", [Steer(direction, alpha=0.5),
                                             Steer(direction, alpha=0.25)])
    joined = next_token_probs(tiny, "hello", Steer(direction, alpha=0.75))
    assert torch.allclose(split, joined, atol=1e-6)
    assert not torch.allclose(joined, next_token_probs(tiny, "hello"), atol=1e-6)


def test_alpha_sweep_at_zero_is_the_unsteered_score_and_each_alpha_is_its_own(tiny, direction):
    """Catches: shifting every alpha of alpha_sweep (e.g. by +0.3)."""
    prompts, pos, neg = ["hello", "abc"], ["a"], ["b"]
    sweep = alpha_sweep(tiny, prompts, direction, [0.0, 0.7], positive=pos, negative=neg)
    p_ids, n_ids = word_ids(tiny, pos), word_ids(tiny, neg)

    def score(steer):
        return np.mean([float(p[p_ids].sum().log() - p[n_ids].sum().log())
                        for p in (next_token_probs(tiny, q, steer) for q in prompts)])

    assert sweep.scores[0] == pytest.approx(score(None), abs=1e-6)
    assert sweep.scores[1] == pytest.approx(score(Steer(direction, alpha=0.7)), abs=1e-6)


def test_unembedding_steering_vector_is_the_causal_riesz_map(tiny):
    """Catches: a NaN (or otherwise wrong) steering vector for unembedding directions."""
    u = Direction("u", torch.randn(tiny.width, generator=torch.Generator().manual_seed(2)),
                  None, "test", space="unembedding")
    v = residual_vector(tiny, u)
    gamma = tiny.parts.unembedding.detach().double()
    cov = torch.cov(gamma.T, correction=0)
    evals = torch.linalg.eigvalsh(cov)
    assert evals.min() > 1e-8 * evals.max()  # well conditioned: a plain solve is the reference
    expected = torch.linalg.solve(cov, u.vector.double())
    expected = (expected / expected.norm()).float()
    assert torch.isfinite(v).all() and torch.allclose(v, expected, atol=1e-4)
    probs = next_token_probs(tiny, "hello", Steer(u, layer=tiny.n_blocks, alpha=0.5))
    assert torch.isfinite(probs).all() and probs.sum() == pytest.approx(1.0, abs=1e-4)


def test_activation_cache_answers_only_for_its_model_fingerprint(tiny):
    """Catches: removing the model fingerprint from the activation cache key."""
    acts = tiny.activations(["one", "two"], layers=[1, 2], cache=False)
    cache = ActivationCache(fingerprint="model-a")
    cache.put(acts, ["last", "last"], torch.float32)
    assert cache.get(["one", "two"], ["last"] * 2, "last", torch.float32, (1, 2)) is acts
    cache.fingerprint = "model-b"  # the weights changed: nothing cached applies
    assert cache.get(["one", "two"], ["last"] * 2, "last", torch.float32, (1, 2)) is None
    assert cache.find(["one"], ["last"], torch.float32, (1,)) == [None]
    cache.fingerprint = "model-a"
    assert cache.get(["one"], ["last"], "last", torch.float32, (2,)) is not None


def test_superseded_work_stops_at_its_next_progress_report(tiny):
    """Catches: removing ``raise Superseded`` from View.submit's progress."""
    from reprlab.widgets.base import View

    view = View(tiny, background=True)
    started, release, steps = threading.Event(), threading.Event(), []

    def slow(progress):
        progress(0, 3)
        started.set()
        release.wait(10)
        for i in range(1, 4):
            progress(i, 3)  # stale from here on: must raise before the step is taken
            steps.append(i)
        return "old"

    rendered = []
    view.submit(slow, rendered.append)
    assert started.wait(10)
    old_worker = view._worker
    view.submit(lambda progress: "new", rendered.append)
    view.wait()
    release.set()
    old_worker.join(10)
    assert steps == [] and rendered == ["new"] and not old_worker.is_alive()


def test_views_list_the_figures_they_draw(tiny):
    """Catches: View.figures() returning [] (image export relies on it)."""
    from reprlab.widgets import CircularMap, ConceptProjection, ProbeCurves, SteeringPanel

    views = {ProbeCurves(tiny, background=False): ("curve_fig", "layer_fig"),
             ConceptProjection(tiny, background=False): ("hist_fig", "sim_fig"),
             CircularMap(tiny, background=False, warm=False, n_permutations=50):
                 ("map_fig", "curve_fig"),
             SteeringPanel(tiny, background=False): ()}
    for view, names in views.items():
        figures = view.figures()
        assert len(figures) == len(names), type(view).__name__
        drawn = [getattr(view, name).figure for name in names]
        assert all(any(f is d for d in drawn) for f in figures)
        assert all(f.data for f in figures)
