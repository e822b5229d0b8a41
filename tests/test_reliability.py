"""Reliability: property tests, interruption and concurrency on tiny models."""

import threading

import numpy as np
import pytest
import torch
from conftest import assert_close_relative
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_probes import make_acts

from reprlab import Direction, Session, Steer, datasets, probe_curve

SESSION = Session.tiny(seed=11)
words = st.text(alphabet="abcdefgh ", min_size=1, max_size=12).filter(lambda t: t.strip())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(words, min_size=1, max_size=7),
       layers=st.lists(st.integers(0, 4), min_size=1, max_size=5),
       at=st.sampled_from(["last", "mean", 0, -1]),
       batch_size=st.integers(1, 4))
def test_batched_extraction_equals_one_at_a_time(texts, layers, at, batch_size):
    batched = SESSION.activations(texts, layers=layers, at=at, batch_size=batch_size, cache=False)
    single = SESSION.activations(texts, layers=layers, at=at, batch_size=1, cache=False)
    assert batched.layers == tuple(sorted(set(layers)))
    assert batched.values.shape == (len(batched.layers), len(texts), SESSION.width)
    assert_close_relative(batched.values, single.values)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(12, 40), d=st.integers(2, 12), layers=st.integers(1, 3),
       kind=st.sampled_from(["binary", "multi", "strings", "numeric"]), seed=st.integers(0, 99))
def test_probe_curves_are_well_formed_and_deterministic(n, d, layers, kind, seed):
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(layers, n, d, generator=g)
    rng = np.random.default_rng(seed)
    labels = {"binary": np.arange(n) % 2, "multi": np.arange(n) % 3,
              "strings": np.where(np.arange(n) % 2, "yes", "no"),
              "numeric": rng.normal(size=n)}[kind]
    acts = make_acts(values)
    a = probe_curve(acts, labels, folds=3, seed=seed)
    b = probe_curve(acts, labels, folds=3, seed=seed)
    assert np.array_equal(a.scores, b.scores) and np.array_equal(a.control, b.control)
    assert a.scores.shape == (layers,) and np.all(np.isfinite(a.scores))
    if kind != "numeric":
        assert np.all((a.scores >= 0) & (a.scores <= 1))


def test_keyboard_interrupt_during_extraction_leaves_no_hooks_and_no_cache_entry():
    s = Session.tiny(seed=2)
    calls = []

    def interrupt(done, total):
        calls.append(done)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        s.activations(["ab", "cd", "ef"], batch_size=1, progress=interrupt)
    assert calls == [1] and s.backend.hook_count() == 0 and s.cache_entries == 0
    assert s.activations(["ab"]).values.shape[1] == 1


def test_concurrent_steering_and_extraction_never_interleave_hooks():
    s = Session.tiny(seed=3)
    d = Direction("d", torch.randn(s.width), 2, "test")
    texts = ["hello there", "abc"]
    clean = s.activations(texts, cache=False).values
    results, errors = [], []

    def extract():
        try:
            for _ in range(15):
                results.append(s.activations(texts, cache=False).values)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    def generate():
        try:
            for _ in range(5):
                s.generate("hi", 20, steer=Steer(d, alpha=5.0))
        except Exception as err:  # pragma: no cover
            errors.append(err)

    threads = [threading.Thread(target=extract), threading.Thread(target=generate)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 15
    assert all(torch.equal(r, clean) for r in results)  # never saw a steering hook
    assert s.backend.hook_count() == 0


def test_session_and_registry_stay_usable_after_bad_calls():
    s = Session.tiny(seed=4)
    s.directions.add(Direction("keep", torch.ones(s.width), 1, "test"))
    bad_calls = [
        lambda: s.activations([]),
        lambda: s.activations(["x"], layers=[9]),
        lambda: s.activations(["x"], at="zzz"),
        lambda: s.generate("x", max_new_tokens=0),
        lambda: s.generate("x", steer="not a steer"),
        lambda: probe_curve(s.activations(["a", "b"]), ["a", "a"]),
        lambda: Direction.counterfactual(s, []),
        lambda: s.directions.remove("missing"),
        lambda: s.directions.add("not a direction"),
    ]
    for call in bad_calls:
        with pytest.raises((ValueError, TypeError, KeyError, IndexError)):
            call()
    assert s.directions.names() == ["keep"] and s.backend.hook_count() == 0
    assert s.generate("x", 3) == s.generate("x", 3)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(words, min_size=1, max_size=9),
       layers=st.lists(st.integers(0, 4), min_size=1, max_size=5),
       at=st.sampled_from(["last", "mean", 0]),
       batch_size=st.integers(1, 4))
def test_disk_store_holds_exactly_the_float16_values(texts, layers, at, batch_size):
    in_ram = SESSION.activations(texts, layers=layers, at=at, batch_size=batch_size,
                                 dtype=torch.float16, cache=False)
    with pytest.warns(UserWarning, match="over the memory budget"):
        on_disk = SESSION.activations(texts, layers=layers, at=at, batch_size=batch_size,
                                      memory_budget=1, cache=False)
    assert on_disk.on_disk and torch.equal(on_disk.values, in_ram.values)


def test_two_widgets_working_at_once_get_the_results_they_would_alone():
    """A SteeringPanel regenerating (steering hooks on) while a ProbeCurves extracts, both in
    background threads on one session: neither sees the other's hooks."""
    from reprlab.widgets import ProbeCurves, SteeringPanel

    alone = Session.tiny(seed=6)
    probe_alone = ProbeCurves(alone, dataset="truth", background=False).result
    steer_alone = SteeringPanel(alone, background=False).result

    s = Session.tiny(seed=6)
    steering = SteeringPanel(s, background=True, debounce=0)
    probes = ProbeCurves(s, dataset="truth", background=True)
    for _ in range(3):  # keep both busy at the same time
        steering.wait()
        steering.regenerate()
        probes.compute()
    steering.wait()
    probes.wait()
    assert s.backend.hook_count() == 0
    assert "Error" not in steering.status.value + probes.status.value
    assert np.array_equal(probes.result.scores, probe_alone.scores)
    assert [t.id for t in steering.result.steered] == [t.id for t in steer_alone.steered]
    truth = list(datasets.load("truth").texts)
    assert torch.equal(s.activations(truth).values, alone.activations(truth).values)  # caches
