"""Definitions pinned by independent computations (issue 20 item 5).

Each test computes the quantity a second way (numpy, scipy, scikit-learn or plain torch) and
is checked to tell the definition from a plausible wrong one: each would fail if the kernel
took the mean for the median, averaged special tokens, counted the observed labelling twice,
divided instead of multiplied, swapped the KL's arguments, dropped the token crossing top-p,
read a held-out output from a fold that trained on the row, replaced a different direction of
the same name, or lost the sign alignment of a PCA axis.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from reprlab import Direction, Session, Steer, datasets, logit_shift
from reprlab.circular import circularity_stats, cyclic_distance
from reprlab.steering import _pick


@pytest.fixture(scope="module")
def tiny() -> Session:
    return Session.tiny(seed=0)


# -- typical norm: the median, not the mean ------------------------------------------------------


def test_typical_norm_is_the_median_norm_of_the_reference_rows(tiny):
    """typical_norm(l) = median over the reference texts of |h_l| (read at the last token).

    Checked below the last layer, where the stream read and the stream edited are the same."""
    texts = list(datasets.load("sentiment").texts) + list(datasets.load("truth").texts)
    acts = tiny.activations(texts)
    told = 0
    for layer in range(tiny.n_blocks):
        norms = acts.layer(layer).double().norm(dim=-1)
        median, mean = float(norms.median()), float(norms.mean())
        got = tiny.geometry.typical_norm(layer)
        assert got == pytest.approx(median, rel=1e-5), layer
        if abs(mean - median) > 1e-3 * median:
            told += 1
            assert got != pytest.approx(mean, rel=1e-4), layer
    assert told >= 2, "the reference rows must tell the median from the mean"


# -- at="mean": mean over non-special tokens -----------------------------------------------------


def test_mean_position_leaves_out_special_tokens():
    """With a tokenizer that adds a BOS, at="mean" is the mean of the text's own tokens."""
    s = Session.tiny(seed=0, arch="llama-bos")
    texts = ["The cat sat on the mat.", "Hi", "A much longer sentence than the others."]
    ids = s.tokenizer(texts[0], return_special_tokens_mask=True)
    assert ids["special_tokens_mask"][0] == 1 and ids["input_ids"][0] == s.tokenizer.bos_token_id
    acts = s.activations(texts, at="mean")
    for i, text in enumerate(texts):
        rows = s.token_activations(text).values.double()        # [L, T, D], BOS first
        expected = rows[:, 1:].mean(1)
        everything = rows.mean(1)
        got = acts.values[:, i].double()
        err = ((got - expected).norm(dim=-1) / expected.norm(dim=-1)).max()
        assert err < 1e-4, (text, float(err))
        gap = ((everything - expected).norm(dim=-1) / expected.norm(dim=-1)).max()
        assert gap > 100 * max(float(err), 1e-6), "the BOS must change the all-token mean"


# -- circular: the exhaustive permutation test ---------------------------------------------------


def _planted_cycle(k: int, templates: int, noise: float, seed: int, layers: int = 2):
    rng = np.random.default_rng(seed)
    angle = 2 * np.pi * np.arange(k) / k
    item_index = np.repeat(np.arange(k), templates)
    template_index = np.tile(np.arange(templates), k)
    x = []
    for layer in range(layers):
        circle = np.stack([np.cos(angle), np.sin(angle)], 1)[item_index] * (layer + 1)
        pts = np.concatenate([circle, np.zeros((len(item_index), 4))], 1)
        x.append(pts + noise * rng.normal(size=pts.shape))
    return torch.tensor(np.stack(x), dtype=torch.float32), item_index, template_index


def _brute_force_p(x, item_index, k):
    """Exhaustive relabelling p-values from scipy's Spearman, over all k! labellings."""
    means = np.stack([x[:, item_index == j].double().mean(1).numpy() for j in range(k)], 1)
    iu = np.triu_indices(k, 1)
    cyc = cyclic_distance(k)[iu]
    steps = np.arange(k)
    lin = np.abs(steps[:, None] - steps[None, :])[iu]
    perms = list(itertools.permutations(range(k)))
    rho_c = np.zeros((len(means), len(perms)))
    rho_l = np.zeros_like(rho_c)
    for layer, m in enumerate(means):
        dist = np.linalg.norm(m[:, None] - m[None], axis=-1)
        for b, perm in enumerate(perms):
            d = dist[np.ix_(perm, perm)][iu]
            rho_c[layer, b] = spearmanr(d, cyc).statistic
            rho_l[layer, b] = spearmanr(d, lin).statistic
    identity = perms.index(tuple(range(k)))
    obs_c = rho_c[:, identity]
    p = (rho_c >= obs_c[:, None] - 1e-9).mean(1)        # the identity is one of the k! draws
    # cyclic beyond linear: max-T over layers of the difference standardized per layer
    d = rho_c - rho_l
    mu, sd = d.mean(1, keepdims=True), d.std(1, keepdims=True)
    t_obs = (d[:, identity] - mu[:, 0]) / sd[:, 0]
    t_max = ((d - mu) / sd).max(0)
    p_beyond = (t_max[None] >= t_obs[:, None] - 1e-9).mean(1)
    p_beyond = np.where(d[:, identity] > 0, p_beyond, 1.0)
    return obs_c, p, p_beyond, len(perms)


@pytest.mark.parametrize("noise, clustered", [(0.05, False), (0.6, False), (0.6, True)])
def test_exhaustive_circular_p_values_match_brute_force(noise, clustered):
    """With n_permutations >= k!, p = #{labellings reaching the observed} / k! exactly (the
    observed labelling is one of the k!, counted once); the same for the corrected test of
    cyclic beyond linear (max-T of per-layer standardized differences)."""
    k = 5
    x, item_index, template_index = _planted_cycle(k, templates=3, noise=noise, seed=1,
                                                   layers=3 if clustered else 2)
    if clustered:  # items in two clumps: linear order beats cyclic (a negative difference)
        clumps = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0])[item_index]
        gen = torch.Generator().manual_seed(0)
        x[2] = torch.nn.functional.pad(clumps[:, None], (0, 5)) + 1e-4 * torch.randn(
            len(item_index), 6, generator=gen)
    stats = circularity_stats(x, item_index, template_index, k, n_permutations=1000)
    rho, p, p_beyond, n_perms = _brute_force_p(x, item_index, k)
    assert stats.n_permutations == n_perms == math.factorial(k)
    np.testing.assert_allclose(stats.rho_cyclic, rho, atol=1e-9)
    np.testing.assert_allclose(stats.p_value, p, atol=1e-12)
    np.testing.assert_allclose(stats.p_beyond_linear, p_beyond, atol=1e-12)
    if clustered:
        assert stats.rho_cyclic[2] < stats.rho_linear[2] and stats.p_beyond_linear[2] == 1.0
    if noise < 0.1:  # a clean circle ties only with its 2k rotations and reflections
        np.testing.assert_allclose(stats.p_value, 2 * k / math.factorial(k), atol=1e-12)


# -- geometry: the logit pairing -----------------------------------------------------------------


@pytest.mark.parametrize("inner", ["euclidean", "standardized", "causal", "whitened"])
def test_unembedding_map_is_dual_to_the_residual_map(tiny, inner):
    """residual_map(h) . unembedding_map(u) == h . u for the last hidden state: logits are the
    same number in every geometry."""
    g = tiny.geometry
    last = tiny.n_blocks
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(6, tiny.width, generator=gen) * 3
    u = tiny.parts.unembedding[:7].detach().float()
    got = (g.residual_map(inner, last)(h).double() @ g.unembedding_map(inner)(u).double().T)
    expected = h.double() @ u.double().T
    scale = expected.abs().max()
    assert float((got - expected).abs().max() / scale) < 1e-3
    if inner == "standardized":  # the scales must be far from 1 for this to mean anything
        s = g.scale(last)
        assert float(s.max() / s.min()) > 1.5 or float((s - 1).abs().max()) > 0.5


# -- steering: KL direction and top-p ------------------------------------------------------------


def test_logit_shift_kl_is_kl_after_from_before(tiny):
    gen = torch.Generator().manual_seed(3)
    d = Direction("random", torch.randn(tiny.width, generator=gen), 2, "manual")
    shift = logit_shift(tiny, "The cat sat on the", Steer(d, alpha=4.0))
    p, q = shift.after.double(), shift.before.double()
    after_before = float((p * (p / q).log()).sum())
    before_after = float((q * (q / p).log()).sum())
    assert shift.kl == pytest.approx(after_before, rel=1e-4, abs=1e-7)
    # the tiny model's next-token distribution is near uniform, so the two KLs differ by ~1%:
    # 50x the tolerance above
    assert abs(after_before - before_after) > 5e-3 * after_before > 0, (
        "the test case must tell KL(after||before) from KL(before||after)")


@pytest.mark.parametrize("top_p", [0.6, 0.79])
def test_top_p_keeps_the_token_that_crosses_the_threshold(top_p):
    """Nucleus sampling keeps the smallest top set whose mass reaches top_p: with p = (0.5,
    0.3, 0.15, 0.05) and top_p 0.6 or 0.79 that is tokens {0, 1}, sampled 5:3."""
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])           # order shuffled on purpose
    logits = probs.log()
    gen = torch.Generator().manual_seed(0)
    draws = np.array([_pick(logits, 1.0, top_p, gen) for _ in range(4000)])
    assert set(np.unique(draws)) == {1, 3}
    assert (draws == 3).mean() == pytest.approx(0.3 / 0.8, abs=0.03)


# -- registry: add_new never replaces a different direction --------------------------------------


def test_add_new_keeps_a_different_direction_of_the_same_name_method_and_layer(tiny):
    reg = tiny.directions
    gen = torch.Generator().manual_seed(0)
    first = reg.add_new(Direction("concept", torch.randn(tiny.width, generator=gen), 2,
                                  "mean_difference"))
    other = Direction("concept", torch.randn(tiny.width, generator=gen), 2, "mean_difference")
    got = reg.add_new(other)
    assert got.name == "concept-2"
    assert reg["concept"] is first
    assert torch.equal(reg["concept-2"].vector, other.vector)
    again = reg.add_new(Direction("concept", first.vector.clone(), 2, "mean_difference"))
    assert again.name == "concept"  # rebuilding the same direction replaces it, no new name
    assert sorted(reg.names()) == ["concept", "concept-2"]
    for name in ("concept", "concept-2"):
        reg.remove(name)


# -- directions: PCA of differences is signed by the mean difference -----------------------------


def test_pca_of_differences_agrees_in_sign_with_the_mean_difference(tiny):
    """Planted pairs whose differences lie along one axis with coefficients of mixed sign
    (random axes, both orientations): the axis always points along the mean difference,
    whatever sign the SVD returns (it returns the wrong one for about a third of these)."""
    texts = [f"text number {i}" for i in range(12)]
    acts = tiny.activations(texts, layers=[2])
    gen = torch.Generator().manual_seed(0)
    svd_disagrees = 0
    for _ in range(12):
        axis = torch.randn(tiny.width, generator=gen)
        axis /= axis.norm()
        base = torch.randn(1, 12, tiny.width, generator=gen)
        coef = torch.randn(12, generator=gen) + 0.5
        coef += torch.sign(coef.mean()) * 0.2  # keep the mean difference clearly non-zero
        shift = coef[None, :, None] * axis
        noise = 0.01 * torch.randn(base.shape, generator=gen)
        a = dataclasses.replace(acts, values=base + shift + noise)
        b = dataclasses.replace(acts, values=base.clone())
        for pos, neg in ((a, b), (b, a)):
            diffs = (pos.values[0] - neg.values[0]).double()
            mean = diffs.mean(0)
            raw = torch.linalg.svd(diffs, full_matrices=False).Vh[0]
            svd_disagrees += int(float(raw @ mean) < 0)
            d = Direction.pca_of_differences((pos, neg), layer=2)
            assert float(d.vector.double() @ mean) > 0
            assert abs(float(d.vector.double() @ axis.double())) > 0.99
    assert svd_disagrees >= 1, "some case must get the SVD's sign wrong"


# -- probes: held-out outputs and one fit for scores and p-values --------------------------------


def _acts(values: torch.Tensor):
    from reprlab.activations import Activations

    n = values.shape[1]
    return Activations(values, tuple(range(values.shape[0])), tuple(f"t{i}" for i in range(n)),
                       ("x",) * n, (0,) * n, "last")


def _planted_probe(n=60, d=20, layers=3, strength=(0.0, 0.4, 1.2), seed=0, classes=2):
    g = torch.Generator().manual_seed(seed)
    y = np.arange(n) % classes
    dirs = torch.randn(classes, d, generator=g)
    values = torch.randn(layers, n, d, generator=g)
    values[..., 2] *= 30  # an outlier dimension: standardization matters
    for layer in range(layers):
        values[layer] += strength[layer] * dirs[torch.as_tensor(y)]
    return _acts(values), y


def _refit_heldout(values: torch.Tensor, target, fold_ids, make, output):
    """Each row's output from a scikit-learn probe fitted on the other folds only."""
    from sklearn.preprocessing import StandardScaler

    X = values.numpy().astype(np.float64)
    out = np.zeros(len(X))
    for f in np.unique(fold_ids):
        tr, te = fold_ids != f, fold_ids == f
        scaler = StandardScaler().fit(X[tr])
        model = make().fit(scaler.transform(X[tr]), target[tr])
        out[te] = output(model, scaler.transform(X[te]))
    return out


def test_heldout_scores_come_from_the_folds_that_did_not_train_on_the_row():
    from sklearn.linear_model import LogisticRegression, Ridge

    from reprlab import probe_curve

    acts, y = _planted_probe()
    C = 0.3  # weakly regularized, 20 features, 48 training rows: in-sample outputs differ a lot
    curve = probe_curve(acts, y, C=C, control=False)
    target = (acts.values[2, :, :3].sum(-1) + torch.randn(60, generator=torch.Generator()
                                                          .manual_seed(1))).double().numpy()
    reg = probe_curve(acts, target, ridge=5.0, control=False)
    for layer in (1, 2):
        ref = _refit_heldout(acts.layer(layer), y, curve.fold_ids,
                             lambda: LogisticRegression(C=C, tol=1e-10, max_iter=10000),
                             lambda m, x: m.decision_function(x))
        got = curve.heldout_scores(layer).double().numpy()
        tol = 1e-2 * np.abs(ref).max()  # the batched solver agrees with lbfgs to ~0.1% here
        np.testing.assert_allclose(got, ref, atol=tol)
        in_sample = (acts.layer(layer) @ curve.weights[layer].T + curve.bias[layer])[:, 0]
        assert np.abs(in_sample.double().numpy() - ref).max() > 5 * tol  # the test can tell
        ref_r = _refit_heldout(acts.layer(layer), target, reg.fold_ids, lambda: Ridge(alpha=5.0),
                               lambda m, x: m.predict(x))
        np.testing.assert_allclose(reg.heldout_scores(layer).double().numpy(), ref_r,
                                   atol=1e-4 * np.abs(ref_r).max())


@pytest.mark.parametrize("classes", [2, 3])
def test_p_values_test_the_scores_shown_beside_them(classes):
    """One fit: the observed statistic of the permutation test is ``curve.scores``, and the
    null is the shuffles' scores from the same solve (``control_fold_scores``)."""
    from reprlab import probe_curve
    from reprlab.probes import standardized_max_p_values

    mismatch = 0
    for seed in range(6):
        acts, y = _planted_probe(n=48, d=24, strength=(0.0, 0.25, 0.5), seed=seed,
                                 classes=classes)
        curve = probe_curve(acts, y, C=1.0, n_permutations=30, seed=seed)
        null = curve.control_fold_scores.mean(2)                              # [L, B]
        np.testing.assert_allclose(curve.control, null.mean(1), atol=1e-12)
        raw, p = standardized_max_p_values(curve.scores, null, curve.chance)
        mismatch += int(not np.array_equal(p, curve.p_values))
        np.testing.assert_array_equal(raw, curve.p_uncorrected)
        np.testing.assert_array_equal(null.max(0), curve.null_max)
    assert mismatch == 0
