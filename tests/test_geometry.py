"""Directions and inner products: planted ground truth, closed forms, tiny models."""

import numpy as np
import pytest
import torch
from test_probes import make_acts

from reprlab import Direction, Session, probe_curve
from reprlab.geometry import (
    CausalWhitening,
    cosine,
    project,
    similarity_matrix,
    token_projection,
)


def planted_pairs(n=60, d=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(d, generator=g)
    truth /= truth.norm()
    neg = torch.randn(1, n, d, generator=g)
    pos = neg + 3.0 * truth + 0.3 * torch.randn(1, n, d, generator=g)
    return make_acts(pos), make_acts(neg), truth


def test_causal_whitening_makes_unembedding_covariance_identity(tiny):
    gamma = tiny.parts.unembedding
    w = CausalWhitening.from_unembedding(gamma)
    z = w.transform_unembedding(gamma, points=True).double()
    cov = z.T @ z / len(z)
    assert torch.allclose(cov, torch.eye(cov.shape[0], dtype=cov.dtype), atol=1e-4)
    assert torch.allclose(w.whiten @ w.unwhiten, torch.eye(len(cov)), atol=1e-4)


def test_causal_self_inner_product_is_one_and_pairing_is_preserved(tiny):
    d = Direction("u", torch.randn(tiny.width), None, "test", space="unembedding")
    v = tiny.geometry.direction_vector(d, "causal")
    assert v @ v == pytest.approx(1.0, abs=1e-5)
    assert cosine(tiny, d, d, "causal") == pytest.approx(1.0, abs=1e-5)
    x, u = torch.randn(5, tiny.width), torch.randn(tiny.width)
    mapped = tiny.geometry.residual_map("causal", tiny.n_blocks)(x) @ \
        tiny.geometry.unembedding_map("causal")(u)
    assert torch.allclose(mapped, x @ u, rtol=1e-3, atol=1e-3)  # logits do not change


def test_mean_difference_recovers_a_planted_direction_and_separates_the_sets():
    pos, neg, truth = planted_pairs()
    d = Direction.mean_difference(pos, neg, layer=0, name="planted")
    assert float(d.vector @ truth) > 0.99
    p, q = d.project(pos), d.project(neg)
    threshold = (p.mean() + q.mean()) / 2
    assert ((p > threshold).float().mean() + (q < threshold).float().mean()) / 2 > 0.9


def test_pca_of_differences_recovers_the_planted_direction_with_its_sign():
    pos, neg, truth = planted_pairs()
    d = Direction.pca_of_differences((pos, neg), layer=0)
    assert float(d.vector @ truth) > 0.99


def test_probe_direction_points_to_the_second_class():
    pos, neg, truth = planted_pairs()
    both = make_acts(torch.cat([pos.values, neg.values], dim=1))
    labels = ["a"] * len(pos) + ["b"] * len(neg)
    d = Direction.from_probe(probe_curve(both, labels), layer=0)
    assert d.info["positive"] == "b" and float(d.vector @ truth) < -0.5


def test_standardized_geometry_discounts_an_outlier_dimension(tiny):
    ref = make_acts(torch.randn(tiny.n_blocks + 1, 200, tiny.width))
    ref.values[:, :, 0] *= 100
    tiny.geometry.set_reference(ref)
    outlier = Direction("outlier", torch.eye(tiny.width)[0], 2, "test")
    other = Direction("other", torch.eye(tiny.width)[0] + torch.eye(tiny.width)[1], 2, "test")
    assert cosine(tiny, outlier, other, "euclidean") == pytest.approx(2 ** -0.5, abs=1e-5)
    assert cosine(tiny, outlier, other, "standardized") < 0.05


def test_token_projection_equals_projecting_each_position(tiny):
    text = "hello there, world"
    d = Direction("d", torch.randn(tiny.width), 3, "test")
    tp = token_projection(tiny, text, d, layer=3, inner="causal", center=False)
    n = len(tp.tokens)
    for i in range(n):
        single = project(tiny, d, tiny.activations([text], at=i), "causal", layer=3)
        assert float(single[0]) == pytest.approx(float(tp.values[i]), rel=1e-4, abs=1e-5)


def test_counterfactual_direction_uses_single_token_pairs_and_skips_others(tiny):
    d = Direction.counterfactual(tiny, [("a", "b"), ("c", "d"), ("long", "words")], name="ab")
    assert d.space == "unembedding" and d.layer is None
    assert d.info["pairs_used"] == 2 and d.info["pairs_skipped"] == [("long", "words")]
    gamma = tiny.parts.unembedding
    ids = [tiny.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in "abcd"]
    expected = (gamma[ids[1]] - gamma[ids[0]] + gamma[ids[3]] - gamma[ids[2]]) / 2
    assert torch.allclose(d.vector, expected / expected.norm(), atol=1e-4)


def test_similarity_matrix_is_symmetric_with_unit_diagonal(tiny):
    ds = [Direction(f"d{i}", torch.randn(tiny.width), 2, "test") for i in range(4)]
    for inner in ("euclidean", "causal"):
        m = similarity_matrix(tiny, ds, inner)
        assert np.allclose(m.values, m.values.T, atol=1e-6)
        assert np.allclose(np.diag(m.values), 1, atol=1e-5)


def test_directions_from_different_spaces_are_not_compared(tiny):
    a = Direction("a", torch.randn(tiny.width), 2, "test")
    b = Direction("b", torch.randn(tiny.width), 3, "test")
    with pytest.raises(ValueError, match="different spaces"):
        cosine(tiny, a, b)
    with pytest.raises(ValueError, match="share layer and space"):
        a + b
    assert (a + a).layer == 2 and torch.allclose((-a).vector, -a.vector)


def test_registry_events_reach_subscribers_until_they_unsubscribe():
    s = Session.tiny()
    heard = []
    unsubscribe = s.directions.observe(lambda event, d: heard.append((event, d.name)))
    d = Direction("x", torch.ones(s.width), 1, "test")
    s.directions.add(d)
    s.directions.remove("x")
    unsubscribe()
    s.directions.add(d)
    assert heard == [("added", "x"), ("removed", "x")]
    with pytest.raises(KeyError, match="no direction named 'nope'"):
        s.directions["nope"]


@pytest.mark.parametrize("bad, words", [
    (torch.zeros(8), "zero length: pass a non-zero vector"), (torch.ones(2, 4), "one vector"),
])
def test_bad_direction_vectors_are_refused(bad, words):
    with pytest.raises(ValueError, match=words):
        Direction("bad", bad, 0, "test")


def test_unknown_inner_product_is_named(tiny):
    d = Direction("d", torch.randn(tiny.width), 2, "test")
    with pytest.raises(ValueError, match="unknown inner product 'cosmic'"):
        cosine(tiny, d, d, "cosmic")


# -- whitened inner product, where causal is approximate, centred projections -----------------


def _correlated_reference(session, n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(session.width, session.width, generator=g)
    values = torch.randn(len(session.layers), n, session.width, generator=g) @ mix + 3.0
    values[..., 5] *= 40  # an outlier dimension
    return make_acts(values)


def test_whitened_inner_product_matches_an_independent_shrunk_whitening():
    from scipy.linalg import sqrtm

    s = Session.tiny(seed=0)
    ref = _correlated_reference(s)
    s.geometry.set_reference(ref)
    layer = 2
    x = ref.values[layer].double().numpy()
    cov = np.cov(x, rowvar=False)
    shrunk = 0.9 * cov + 0.1 * np.diag(np.diag(cov))
    expected_map = np.real(np.linalg.inv(sqrtm(shrunk)))
    probe = torch.randn(7, s.width)
    ours = s.geometry.residual_map("whitened", layer)(probe).double().numpy()
    np.testing.assert_allclose(ours, probe.double().numpy() @ expected_map, rtol=2e-3, atol=2e-4)
    # the reference activations are nearly white there (shrinkage keeps variances a bit < 1)
    z = s.geometry.residual_map("whitened", layer)(ref.values[layer] - ref.values[layer].mean(0))
    cov_z = z.double().T @ z.double() / (len(z) - 1)
    assert torch.all((cov_z.diagonal() > 0.5) & (cov_z.diagonal() < 1.01))
    raw = ref.values[layer].double()
    assert cov_z.diagonal().max() / cov_z.diagonal().min() < 2 < \
        raw.var(0).max() / raw.var(0).min()


def test_whitened_is_estimated_at_the_layer_read_and_keeps_logits():
    s = Session.tiny(seed=0)
    ref = _correlated_reference(s)
    s.geometry.set_reference(ref)
    w1, w3 = s.geometry.whitening(1)[0], s.geometry.whitening(3)[0]
    assert not torch.allclose(w1, w3)
    x, u = torch.randn(4, s.width), torch.randn(s.width)
    last = s.n_blocks
    paired = s.geometry.residual_map("whitened", last)(x) @ \
        s.geometry.unembedding_map("whitened")(u)
    assert torch.allclose(paired, x @ u, rtol=1e-3, atol=1e-3)
    d = Direction("u", torch.randn(s.width), None, "test", space="unembedding")
    assert cosine(s, d, d, "whitened") == pytest.approx(1.0, abs=1e-5)


def test_causal_note_says_where_it_is_an_approximation(tiny):
    from reprlab.geometry import inner_note

    assert inner_note(tiny, "causal", tiny.n_blocks) == ""
    assert inner_note(tiny, "euclidean", 0) == "" and inner_note(tiny, "whitened", 0) == ""
    far = inner_note(tiny, "causal", 0)
    assert "approximation" in far and "far from the output" in far and "whitened" in far
    assert "close to the output" in inner_note(tiny, "causal", tiny.n_blocks - 1)


def test_projections_are_centred_on_the_reference_mean_by_default():
    s = Session.tiny(seed=0)
    ref = _correlated_reference(s)
    s.geometry.set_reference(ref)
    d = Direction("d", torch.randn(s.width), 2, "test")
    raw = token_projection(s, "a small test sentence", d, center=False)
    centred = token_projection(s, "a small test sentence", d)
    v = d.vector / d.vector.norm()
    shift = float(ref.values[2].float().mean(0) @ v)
    np.testing.assert_allclose(centred.values, raw.values - shift, rtol=1e-4, atol=1e-3)
    assert centred.centered and "mean of the reference texts" in centred.origin
    # the reference itself averages to zero along the direction once centred
    assert abs(float(project(s, d, ref, center=True, layer=2).mean())) < 1e-3


def test_similarity_matrix_carries_a_null_and_the_heatmap_shows_it(tiny):
    from reprlab.widgets.figures import similarity_heatmap

    ds = [Direction(f"d{i}", torch.randn(tiny.width), 2, "test") for i in range(3)]
    m = similarity_matrix(tiny, ds, "euclidean")
    # random directions in 64 dimensions: |cos| about sqrt(2 / (pi * 64)) = 0.1
    assert m.null_what == "random directions" and 0.05 < m.null_mean_abs < 0.16
    assert m.null_high > m.null_mean_abs
    assert "random directions: mean |cos|" in similarity_heatmap(m).layout.title.text
    assert similarity_matrix(tiny, ds, "euclidean", null=False).null_mean_abs is None
