"""Circularity statistics are computed once per (cycle, layers, inner), apart from coordinates."""

import numpy as np
import pytest
import torch

import reprlab.circular as circ
from reprlab import circular_analysis


@pytest.fixture
def counted(monkeypatch):
    calls = {"permutations": 0, "ridge": 0}
    perms, ridge = circ._permutations, circ.fit_ridge

    def count_perms(*a, **k):
        calls["permutations"] += 1
        return perms(*a, **k)

    def count_ridge(*a, **k):
        calls["ridge"] += 1
        return ridge(*a, **k)

    monkeypatch.setattr(circ, "_permutations", count_perms)
    monkeypatch.setattr(circ, "fit_ridge", count_ridge)
    monkeypatch.setattr(circ, "umap_2d", lambda x, seed=0: x[:, :2] * 1.0)  # no numba here
    return calls


def test_circle_probe_coordinates_are_the_held_out_predictions_of_its_statistics(tiny, counted):
    probe = circular_analysis(tiny, "days", map_method="circle_probe", n_permutations=50)
    assert counted == {"permutations": 1, "ridge": 1}
    x = np.stack([probe.coords[layer] for layer in probe.layers])
    acts = tiny.activations(list(probe.texts), at=[probe.items[k] for k in probe.item_index])
    values = torch.stack([acts.layer(layer) for layer in probe.layers])
    (expected, _), = circ.circle_probe_predictions(values, probe.item_index,
                                                   probe.template_index, len(probe.items))
    np.testing.assert_allclose(x, expected, rtol=1e-4, atol=1e-5)


def test_reused_statistics_skip_the_permutation_test_and_the_ridge(tiny, counted):
    probe = circular_analysis(tiny, "days", map_method="circle_probe", n_permutations=50)
    pca = circular_analysis(tiny, "days", map_method="pca", stats=probe.stats)
    assert pca.stats is probe.stats and counted == {"permutations": 1, "ridge": 1}
    one = circular_analysis(tiny, "days", layers=[2], map_method="umap",
                            stats=probe.stats.take([2]))
    assert counted == {"permutations": 1, "ridge": 1}
    assert one.stats.rho_cyclic.tolist() == [probe.stats.rho_cyclic[2]]
    with pytest.raises(ValueError, match="stats= holds 5 layers but 1"):
        circular_analysis(tiny, "days", layers=[2], stats=probe.stats)
    rows = pca.rows()
    assert [r["layer"] for r in rows] == list(pca.layers)
    assert rows[2]["p_value"] == float(probe.stats.p_value[2]) and rows[0]["cycle"] == "days"


def test_standardized_reference_extraction_reports_to_progress_not_stderr(tiny, capsys):
    heard = []
    circular_analysis(tiny, "days", inner="standardized", n_permutations=20,
                      progress=lambda done, total: heard.append((done, total)))
    assert len(heard) > 2  # the reference texts' batches as well as the cycle's
    assert "activations" not in capsys.readouterr().err


def test_circular_map_computes_once_per_cycle_and_inner(tiny, counted):
    from reprlab.widgets import CircularMap

    w = CircularMap(tiny, background=False, warm=False, n_permutations=50)
    assert counted == {"permutations": 1, "ridge": 1}
    w.method.value = "circle probe"
    w.method.value = "UMAP"
    for layer in (1, 3):
        w.layer.value = layer
    assert counted == {"permutations": 1, "ridge": 1}  # UMAP layers reuse the statistics
    w.inner.value = "causal"
    assert counted == {"permutations": 2, "ridge": 2}
    w.inner.value = "standardized"  # back: from the view's cache
    assert counted == {"permutations": 2, "ridge": 2} and w.result.inner == "standardized"
    assert w.rows() == w.result.rows() and len(w.rows()) == tiny.n_blocks + 1
