"""The batched solvers: dual and primal ridge agree (and with scikit-learn), and any layer
chunking gives exactly the unchunked result."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from reprlab import probe_solvers
from reprlab.probe_solvers import fit_logistic, fit_ridge, fold_standardization, layer_chunks

HUGE = 10**15  # a budget that holds every layer in one chunk


def planted_regression(layers=5, n=61, d=90, targets=3, seed=0, dtype=torch.float64):
    """Targets linear in a few features (strength growing with layer), an outlier dimension."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(layers, n, d, generator=g, dtype=torch.float64)
    x[..., 5] *= 80
    w = torch.randn(d, targets, generator=g, dtype=torch.float64) * (torch.rand(d, 1) < 0.1)
    strength = torch.linspace(0, 2, layers, dtype=torch.float64)[:, None, None]
    y = (strength * (x @ w)).mean(0) + 0.3 * torch.randn(n, targets, generator=g,
                                                          dtype=torch.float64)
    return x.to(dtype), y.T.numpy()


def folds_of(n, folds=4, uneven=True):
    ids = np.arange(n) % folds
    if uneven:  # folds of different sizes, as groups make them
        ids[: n // 5] = 0
    return ids, torch.tensor(np.stack([ids != f for f in range(folds)] + [np.ones(n, bool)]))


def test_dual_ridge_matches_primal_to_1e6_on_planted_data():
    x, y = planted_regression()
    _, train = folds_of(x.shape[1])
    stats = fold_standardization(x, train)
    dual = fit_ridge(x, y, train, stats, ridge=10.0, form="dual")
    primal = fit_ridge(x, y, train, stats, ridge=10.0, form="primal")
    scale = float(primal.outputs.abs().max())
    assert float((dual.outputs - primal.outputs).abs().max()) <= 1e-6 * scale
    assert float((dual.weights - primal.weights).abs().max()) <= 1e-6 * float(
        primal.weights.abs().max())
    assert float((dual.bias - primal.bias).abs().max()) <= 1e-6 * scale


@pytest.mark.parametrize("form", ["dual", "primal"])
def test_ridge_forms_match_sklearn_per_fold(form):
    x, y = planted_regression(layers=3)
    fold_ids, train = folds_of(x.shape[1])
    fit = fit_ridge(x, y, train, fold_standardization(x, train), ridge=3.0, form=form)
    for layer in range(x.shape[0]):
        X = x[layer].numpy()
        for f in range(train.shape[0]):
            rows = train[f].numpy()
            scaler = StandardScaler().fit(X[rows])
            model = Ridge(alpha=3.0).fit(scaler.transform(X[rows]), y.T[rows])
            expected = model.predict(scaler.transform(X))            # [N, S]
            got = fit.outputs[layer, f, :, :, 0].numpy().T
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-8 * np.abs(expected).max())


def test_float32_dual_and_primal_agree_closely():
    x, y = planted_regression(dtype=torch.float32)
    _, train = folds_of(x.shape[1])
    stats = fold_standardization(x, train)
    dual = fit_ridge(x, y, train, stats, ridge=10.0, form="dual")
    primal = fit_ridge(x, y, train, stats, ridge=10.0, form="primal")
    assert dual.outputs.dtype == torch.float32
    scale = float(primal.outputs.abs().max())
    assert float((dual.outputs - primal.outputs).abs().max()) <= 1e-4 * scale


def test_auto_takes_the_dual_form_with_fewer_examples_than_features(monkeypatch):
    calls = []
    for name in ("_ridge_dual", "_ridge_primal"):
        real = getattr(probe_solvers, name)
        monkeypatch.setattr(probe_solvers, name,
                            lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    for n, d in [(40, 90), (120, 30)]:
        x, y = planted_regression(layers=2, n=n, d=d)
        _, train = folds_of(n)
        fit_ridge(x, y, train, fold_standardization(x, train), ridge=1.0)
    assert calls == ["_ridge_dual", "_ridge_primal"]


def assert_fits_equal(a, b):
    for name in ("outputs", "weights", "bias"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize("budget", [1, 3 * 10**6])  # one layer per chunk; a few layers, uneven
@pytest.mark.parametrize("form", ["dual", "primal"])
def test_chunked_ridge_equals_unchunked_exactly(budget, form):
    x, y = planted_regression(layers=7, dtype=torch.float32)
    _, train = folds_of(x.shape[1])
    stats = fold_standardization(x, train, memory_budget=HUGE)
    chunked_stats = fold_standardization(x, train, memory_budget=budget)
    for name in ("center", "mu", "sd"):
        assert torch.equal(getattr(stats, name), getattr(chunked_stats, name))
    whole = fit_ridge(x, y, train, stats, ridge=5.0, form=form, memory_budget=HUGE)
    chunked = fit_ridge(x, y, train, stats, ridge=5.0, form=form, memory_budget=budget)
    assert_fits_equal(chunked, whole)


@pytest.mark.parametrize("budget", [1, 2 * 10**6])
@pytest.mark.parametrize("classes", [2, 3])
def test_chunked_logistic_equals_unchunked_exactly(budget, classes):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(7, 101, 24, generator=g)
    x[..., 2] *= 40
    y = np.arange(101) % classes
    x[:, np.arange(101), y] += torch.linspace(0, 2, 7)[:, None]
    targets = np.stack([y, np.random.default_rng(0).permutation(y)])  # real + one shuffle
    _, train = folds_of(101, folds=5)
    stats = fold_standardization(x, train)
    assert len(layer_chunks(7, 4 * (2 * 101 * 24 + 6 * 101 * 36) + 48 * 576, budget)) > 2
    whole = fit_logistic(x, targets, classes, train, stats, C=0.1, memory_budget=HUGE)
    chunked = fit_logistic(x, targets, classes, train, stats, C=0.1, memory_budget=budget)
    assert_fits_equal(chunked, whole)


def test_float16_values_fit_like_their_float32_copy():
    x, y = planted_regression(layers=3, dtype=torch.float32)
    x16 = x.half()
    _, train = folds_of(x.shape[1])
    a = fit_ridge(x16, y, train, fold_standardization(x16, train), ridge=5.0, memory_budget=1)
    b = fit_ridge(x16.float(), y, train, fold_standardization(x16.float(), train), ridge=5.0)
    assert a.outputs.dtype == torch.float32
    assert_fits_equal(a, b)


def test_layer_chunks_follow_the_memory_budget(monkeypatch):
    assert layer_chunks(5, 100, 800) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert layer_chunks(5, 100, HUGE) == [slice(0, 5)]
    assert layer_chunks(3, 10**12, 1) == [slice(0, 1), slice(1, 2), slice(2, 3)]
    monkeypatch.setenv("REPRLAB_MEMORY_BUDGET", "1200B")
    assert len(layer_chunks(6, 100)) == 2
    with pytest.raises(ValueError, match="cannot read"):
        layer_chunks(6, 100, "lots")


def test_ridge_refuses_an_unknown_form():
    x, y = planted_regression(layers=1)
    _, train = folds_of(x.shape[1])
    with pytest.raises(ValueError, match="form must be"):
        fit_ridge(x, y, train, fold_standardization(x, train), ridge=1.0, form="kernel")


PEAK_CHILD = """
import json, sys
import numpy as np, torch
from reprlab import probe_curve
from reprlab.activations import Activations

def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

L, N, D = (int(v) for v in sys.argv[1:4])
values = torch.randn(L, N, D, generator=torch.Generator().manual_seed(0))
labels = np.arange(N) % 2
values[:, :, 0] += 6 * torch.as_tensor(labels, dtype=torch.float32)
acts = Activations(values, tuple(range(L)), tuple(map(str, range(N))), ("x",) * N, (0,) * N,
                   "last")
small = Activations(values[:2].clone(), (0, 1), acts.texts, acts.tokens, acts.positions, "last")
probe_curve(small, labels, max_iter=20)  # warm-up: libraries' own buffers
before = hwm_mb()
curve = probe_curve(acts, labels, control=False, max_iter=30)
print(json.dumps({"before_mb": before, "peak_mb": hwm_mb(),
                  "data_mb": values.nbytes / 2**20, "best": float(curve.scores.max())}))
"""


def probe_curve_peak(layers, n, d, budget):
    env = {**os.environ, "REPRLAB_MEMORY_BUDGET": budget, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PEAK_CHILD, str(layers), str(n), str(d)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_probe_curve_peak_memory_stays_within_the_budget():
    # 31 x 1,000 x 576 float32 = 68 MB of activations; unchunked, the fold standardization
    # alone held three float64 copies (410 MB) at once.
    run = probe_curve_peak(31, 1000, 576, budget="100MB")
    assert run["best"] > 0.9  # the planted feature is found
    extra = run["peak_mb"] - run["before_mb"]
    assert extra < 120, f"probe_curve took {extra:.0f} MB above its input under a 100 MB budget"


@pytest.mark.parametrize("labels", ["classes", "numbers"])
def test_probe_curve_is_the_same_under_any_memory_budget(monkeypatch, labels):
    from reprlab import probe_curve
    from reprlab.activations import Activations

    g = torch.Generator().manual_seed(4)
    values = torch.randn(5, 80, 30, generator=g)
    y = np.arange(80) % 2 if labels == "classes" else values[3, :, :2].sum(1).double().numpy()
    values[:, :, 1] += torch.linspace(0, 2, 5)[:, None] * torch.as_tensor(y, dtype=torch.float32)
    acts = Activations(values, tuple(range(5)), tuple(map(str, range(80))), ("x",) * 80,
                       (0,) * 80, "last")
    curves = []
    for budget in ("1", "1TB"):  # one layer per chunk; every layer at once
        monkeypatch.setenv("REPRLAB_MEMORY_BUDGET", budget)
        curves.append(probe_curve(acts, y, n_permutations=20))
    small, large = curves
    for name in ("scores", "fold_scores", "control", "p_values", "null_max"):
        np.testing.assert_array_equal(getattr(small, name), getattr(large, name), err_msg=name)
    for name in ("weights", "bias", "heldout"):
        assert torch.equal(getattr(small, name), getattr(large, name)), name
