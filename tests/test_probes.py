"""probe_curve on planted data and tiny models, checked against scikit-learn."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from reprlab import probe_curve
from reprlab.activations import Activations
from reprlab.probes import assign_folds


def make_acts(values: torch.Tensor) -> Activations:
    n = values.shape[1]
    return Activations(values, tuple(range(values.shape[0])), tuple(f"t{i}" for i in range(n)),
                       ("x",) * n, (0,) * n, "last")


def planted(n=200, d=24, layers=4, strength=(0.0, 0.5, 2.0, 4.0), classes=2, seed=0):
    """Layer l carries the class in a random direction with signal ``strength[l]``."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    dirs = torch.randn(classes, d, generator=g)
    values = torch.randn(layers, n, d, generator=g)
    values[..., 3] *= 50  # an outlier dimension, as in real models
    for layer in range(layers):
        values[layer] += strength[layer] * dirs[y]
    return make_acts(values), y.numpy()


def sklearn_scores(values, y, fold_ids, make):
    out = []
    for layer in range(values.shape[0]):
        X = values[layer].numpy().astype(np.float64)
        scores = []
        for f in range(fold_ids.max() + 1):
            tr, te = fold_ids != f, fold_ids == f
            scaler = StandardScaler().fit(X[tr])
            model = make().fit(scaler.transform(X[tr]), y[tr])
            scores.append(model.score(scaler.transform(X[te]), y[te]))
        out.append(np.mean(scores))
    return np.array(out)


def test_planted_signal_rises_with_layer_and_control_stays_at_chance():
    acts, y = planted(strength=(0.0, 0.1, 0.3, 3.0))
    curve = probe_curve(acts, y)
    assert curve.scores[0] < 0.65 and curve.scores[3] > 0.95
    assert np.all(np.diff(curve.scores) > 0)
    assert np.all(np.abs(curve.control - 0.5) < 0.12)
    assert curve.best_layer == 3 and curve.selectivity[3] > 0.3


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("C", [0.01, 0.3])
def test_logistic_matches_sklearn_on_the_same_folds(classes, C):
    acts, y = planted(classes=classes, strength=(0.0, 0.3, 0.6, 1.0))
    curve = probe_curve(acts, y, C=C, control=False)
    ref = sklearn_scores(acts.values, y, curve.fold_ids,
                         lambda: LogisticRegression(C=C, max_iter=5000, tol=1e-10))
    np.testing.assert_allclose(curve.scores, ref, atol=0.01)


def test_ridge_r2_matches_sklearn():
    g = torch.Generator().manual_seed(1)
    values = torch.randn(3, 150, 20, generator=g)
    target = (values[2, :, :3].sum(-1) + 0.5 * torch.randn(150, generator=g)).double().numpy()
    curve = probe_curve(make_acts(values), target, ridge=10.0)
    assert curve.task == "regression" and curve.metric == "r2"
    ref = sklearn_scores(values, target, curve.fold_ids, lambda: Ridge(alpha=10.0))
    np.testing.assert_allclose(curve.scores, ref, atol=1e-4)
    assert curve.scores[2] > 0.5 and abs(curve.control[2]) < 0.3


def test_weights_reproduce_a_probe_fitted_on_all_examples():
    acts, y = planted(strength=(0, 0.3, 0.6, 1.0))
    curve = probe_curve(acts, y, control=False)
    X = acts.layer(2).numpy().astype(np.float64)
    scaler = StandardScaler().fit(X)
    ref = LogisticRegression(C=0.01, max_iter=5000, tol=1e-10).fit(scaler.transform(X), y)
    ours = acts.layer(2) @ curve.weights[2].T + curve.bias[2]
    np.testing.assert_allclose(ours[:, 0].numpy(), ref.decision_function(scaler.transform(X)),
                               atol=1e-3, rtol=1e-3)


def test_heldout_scores_agree_with_fold_accuracy():
    acts, y = planted()
    curve = probe_curve(acts, y, control=False)
    predicted = (curve.heldout_scores(3) > 0).numpy().astype(int)
    assert (predicted == y).mean() == pytest.approx(curve.scores[3], abs=0.02)


def test_string_labels_and_classes_are_kept():
    acts, y = planted()
    names = np.where(y == 1, "pos", "neg")
    curve = probe_curve(acts, list(names))
    assert curve.classes == ("neg", "pos") and curve.labels[0] == names[0]


def test_deterministic_under_a_seed():
    acts, y = planted()
    a, b = probe_curve(acts, y, seed=3), probe_curve(acts, y, seed=3)
    c = probe_curve(acts, y, seed=4)
    assert np.array_equal(a.scores, b.scores) and np.array_equal(a.control, b.control)
    assert not np.array_equal(a.fold_ids, c.fold_ids)


def test_folds_are_stratified_and_groups_stay_together():
    y = np.array([0] * 30 + [1] * 20)
    folds = assign_folds(y, 5, seed=0)
    for f in range(5):
        assert (y[folds == f] == 0).sum() == 6 and (y[folds == f] == 1).sum() == 4
    groups = np.repeat(np.arange(25), 2)
    grouped = assign_folds(y, 5, seed=0, groups=groups)
    assert all(len(set(grouped[groups == g])) == 1 for g in range(25))


def test_runs_on_a_tiny_model_session(tiny):
    texts = [f"{w} number {i}" for i in range(12) for w in ("apple", "stone")]
    labels = [t.split()[0] for t in texts]
    curve = probe_curve(tiny.activations(texts, at="mean"), labels, folds=3)
    assert curve.layers == tuple(range(5)) and curve.scores.shape == (5,)
    assert curve.fold_scores.shape == (5, 3) and curve.control_fold_scores.shape == (5, 100, 3)
    assert curve.scores[0] > 0.9  # the mean embedding holds the first word
    assert len(curve.rows()) == 5 and "selectivity" in curve.rows()[0]


@pytest.mark.parametrize("labels, error, words", [
    ([0, 1, 0], ValueError, "labels has 3 entries but the activations hold 200 texts"),
    (["a"] * 200, ValueError, "one class only"),
    ([0.5] * 199 + [float("nan")], ValueError, "NaN"),
    ([None] * 200, ValueError, "None"),
])
def test_bad_labels_are_explained(labels, error, words):
    acts, _ = planted()
    with pytest.raises(error, match=words):
        probe_curve(acts, labels)


def test_fewer_examples_than_folds_is_explained():
    acts, y = planted(n=4)
    with pytest.raises(ValueError, match="fewer than folds=5"):
        probe_curve(acts, y)


def test_nan_activations_are_explained():
    acts, y = planted()
    acts.values[2, 7, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN/inf .*layer 2, text 7"):
        probe_curve(acts, y)


@pytest.mark.parametrize("kwargs, words", [
    ({"task": "magic"}, "task must be one of"),
    ({"C": 0}, "C must be > 0"),
    ({"folds": 1}, "folds"),
])
def test_bad_options_are_explained(kwargs, words):
    acts, y = planted()
    with pytest.raises(ValueError, match=words):
        probe_curve(acts, y, **kwargs)


# -- significance across layers (max statistic over label shuffles) ---------------------------


def test_random_labels_give_a_uniform_max_over_layers_p_value():
    """Under the null the corrected p-value holds its level: about 5% of seeds fall below 0.05."""
    p = []
    for seed in range(200):
        g = torch.Generator().manual_seed(1000 + seed)
        acts = make_acts(torch.randn(4, 40, 6, generator=g))
        y = np.random.default_rng(seed).permutation(np.arange(40) % 2)
        p.append(probe_curve(acts, y, folds=4, seed=seed, n_permutations=39).p_value)
    p = np.array(p)
    assert 0.015 <= (p < 0.05).mean() <= 0.1
    assert 0.35 <= (p < 0.5).mean() <= 0.65  # uniform, not just right at the tail


def test_a_planted_signal_is_significant_at_its_layer_and_nowhere_else():
    acts, y = planted(strength=(0.0, 0.0, 1.0, 0.0), seed=2)
    curve = probe_curve(acts, y)
    assert curve.p_values[2] <= curve.min_p_value + 1e-12 < 0.01
    assert np.all(curve.p_values[[0, 1, 3]] > 0.05)
    assert list(curve.significant()) == [False, False, True, False]
    assert curve.summary().startswith("Best layer 2") and "1 of 4 layers above chance" in \
        curve.summary()


def test_no_layer_above_chance_is_said_plainly_and_selectivity_is_not_inflated():
    acts, y = planted(strength=(0.0, 0.0, 0.0, 0.0), seed=3)
    curve = probe_curve(acts, y)
    assert curve.p_value > 0.05 and curve.summary().startswith("No layer is above chance")
    # the best layer is picked by its score; its control is the best shuffled layer
    assert abs(curve.best_selectivity) < 0.05
    assert curve.best_selectivity < curve.selectivity[curve.best_layer_index]


def test_p_values_are_the_share_of_shuffles_whose_best_layer_reaches_each_layer():
    from reprlab.probes import max_statistic_p_values

    scores = np.array([0.5, 0.7, 0.9])
    null = np.array([[0.4, 0.6, 0.5, 0.8], [0.5, 0.5, 0.7, 0.6], [0.6, 0.9, 0.4, 0.5]])
    null_max, p = max_statistic_p_values(scores, null)
    np.testing.assert_array_equal(null_max, [0.6, 0.9, 0.7, 0.8])
    np.testing.assert_allclose(p, [5 / 5, 4 / 5, 2 / 5])  # ties count against the layer


def test_group_shuffles_keep_twins_split_and_shared_labels_shared():
    from reprlab.probes import permute_labels

    rng = np.random.default_rng(0)
    twins = np.repeat(np.arange(30), 2)
    y = np.tile([0, 1], 30)
    flips = []
    for _ in range(20):
        shuffled = permute_labels(y, twins, rng)
        assert all(sorted(shuffled[twins == g]) == [0, 1] for g in range(30))
        flips.append((shuffled != y).mean())
    assert 0.3 < np.mean(flips) < 0.7  # each twin pair is flipped about half the time
    folds = np.arange(60) % 3
    within = permute_labels(y, None, rng, folds)
    assert all(sorted(within[folds == f]) == sorted(y[folds == f]) for f in range(3))
    blocks = np.repeat(np.arange(10), 3)
    shared = np.repeat(np.arange(10) % 2, 3)
    out = permute_labels(shared, blocks, rng)
    assert all(len(set(out[blocks == g])) == 1 for g in range(10))
    assert sorted(out) == sorted(shared)


def test_regression_curves_get_the_same_permutation_test():
    g = torch.Generator().manual_seed(5)
    values = torch.randn(3, 120, 10, generator=g)
    target = values[1, :, 0].double().numpy() + 0.3 * np.random.default_rng(0).normal(size=120)
    curve = probe_curve(make_acts(values), target, ridge=10.0)
    assert curve.p_values[1] < 0.01 and curve.p_values[0] > 0.05 and curve.p_values[2] > 0.05


# -- many classes (issue 22 item 2) -------------------------------------------------------------


class _Deadline:
    """Raise TimeoutError in the main thread after ``seconds`` (Unix signal timer)."""

    def __init__(self, seconds: int):
        self.seconds = seconds

    def __enter__(self):
        import signal

        def expire(*_):
            raise TimeoutError(f"took longer than {self.seconds} s")

        self.old = signal.signal(signal.SIGALRM, expire)
        signal.alarm(self.seconds)

    def __exit__(self, *exc):
        import signal

        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.old)


def test_as_many_classes_as_examples_is_refused_at_once():
    """100 classes on 5 x 100 x 64 ran ~2 minutes before (one example per class); now a
    ValueError within seconds, saying what to do."""
    g = torch.Generator().manual_seed(0)
    acts = make_acts(torch.randn(5, 100, 64, generator=g))
    with _Deadline(10):
        with pytest.raises(ValueError, match="100 classes for 100 examples.*floats"):
            probe_curve(acts, [str(i) for i in range(100)])
        with pytest.raises(ValueError, match="50 classes for 100 examples.*merge rare"):
            probe_curve(acts, [f"c{i % 50}" for i in range(100)])


def test_thin_classes_warn():
    acts, y = planted(n=60, classes=6)  # 10 examples per class, 5 folds: 2 per fold, fine
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        probe_curve(acts, y, control=False)
    with pytest.warns(UserWarning, match="fewer than 2 per fold with 5 folds"):
        probe_curve(make_acts(acts.values[:, :30]), y[:30], control=False)


def test_csv_numbers_are_numbers():
    from reprlab.widgets.probe_curves import read_labelled_csv

    rows = "\n".join(f"text {i},{i * 3}" for i in range(30))
    texts, labels, _ = read_labelled_csv(f"text,label\n{rows}\n".encode())
    assert labels == [float(i * 3) for i in range(30)]
    acts = make_acts(torch.randn(2, 30, 8, generator=torch.Generator().manual_seed(0)))
    assert probe_curve(acts, labels, control=False).task == "regression"
    _, binary, _ = read_labelled_csv(b"text,label\na,1\nb,0\nc, 1\n")
    assert binary == [1, 0, 1]  # few distinct integers: classes
    _, words, _ = read_labelled_csv(b"text,label\na,yes\nb,2\n")
    assert words == ["yes", "2"]


# -- layers whose nulls differ, and chance floors (issue 21 item 1) ------------------------------


def test_the_latitude_case_a_pinned_null_and_negative_r2_is_not_significant():
    """The reported case: layer 0 is constant (its shuffles all score -0.01), the other layers'
    shuffles score -0.1 to -0.3, and two layers reach R^2 -0.003 and -0.006. A raw max over
    layers calls both significant at the floor; per-layer standardization and the chance
    floor (R^2 <= 0) never do."""
    from reprlab.probes import max_statistic_p_values, standardized_max_p_values

    rng = np.random.default_rng(0)
    null = rng.uniform(-0.3, -0.1, size=(6, 99))
    null[0] = -0.01
    scores = np.array([-0.01, -0.003, -0.006, -0.2, -0.15, -0.25])
    _, old = max_statistic_p_values(scores, null)
    assert old[1] == old[2] == 0.01  # the pathology
    raw, p = standardized_max_p_values(scores, null, chance=0.0)
    assert raw[1] == raw[2] == 0.01 and np.all(p == 1.0)
    assert standardized_max_p_values(scores, null)[1][0] == 1.0  # the constant layer: untestable
    scores[1] = 0.05  # above chance and above every shuffle: significant after correction
    assert standardized_max_p_values(scores, null, chance=0.0)[1][1] == 0.01


def test_pure_noise_with_a_constant_layer_is_never_called_significant():
    """Noise targets, layer 0 identical for every text, the others random: the family-wise
    false positive rate of "some layer is above chance" stays at the level (over 150 seeds,
    0.05 plus two binomial standard errors)."""
    hits = 0
    for seed in range(150):
        g = torch.Generator().manual_seed(seed)
        values = torch.randn(5, 60, 8, generator=g)
        values[0] = torch.randn(8, generator=g)
        y = np.random.default_rng(seed).normal(size=60)
        curve = probe_curve(make_acts(values), y, folds=4, seed=seed, n_permutations=39,
                            ridge=20.0)
        assert curve.p_values[0] == 1.0
        hits += bool(curve.significant().any())
    assert hits / 150 <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 150)


def test_a_planted_signal_is_found_beside_a_constant_layer_and_many_noise_layers():
    g = torch.Generator().manual_seed(7)
    values = torch.randn(12, 120, 10, generator=g)
    values[0] = torch.randn(10, generator=g)
    y = (values[6, :, :2].sum(-1) + 0.7 * torch.randn(120, generator=g)).double().numpy()
    curve = probe_curve(make_acts(values), y, ridge=10.0)
    assert curve.p_values[6] <= curve.min_p_value + 1e-12 and curve.significant()[6]
    assert curve.significant().sum() == 1
    assert curve.scores[6] > curve.thresholds()[6] and np.isinf(curve.thresholds()[0])
    acts, labels = planted(strength=(0.0, 0.0, 1.0, 0.0), seed=2)
    curve = probe_curve(acts, labels)
    assert list(curve.significant()) == [False, False, True, False]
    assert np.all(curve.p_values[curve.scores <= curve.chance] == 1.0)
