"""The benchmarks' quick modes run in seconds on a tiny model, so they never rot."""

import pytest

from bench import extract, memory, probes, steering


@pytest.mark.parametrize("bench", [extract, memory, probes, steering], ids=lambda m: m.__name__)
def test_benchmark_quick_mode_reports_its_ratios(bench, capsys):
    results = bench.main(["--quick"])
    printed = capsys.readouterr().out
    ratios = [key for key in results if "ratio" in key or "speed-up" in key]
    assert ratios and all(results[key] > 0 for key in ratios)
    assert all(key in printed for key in results)


def test_run_all_writes_a_results_table(tmp_path):
    from bench import run_all

    out = run_all.main(["--quick", "--out", str(tmp_path / "RESULTS.md")])
    text = out.read_text()
    assert "matmul throughput" in text and "| ratio all layers (target >= 1.15) |" in text
    assert "## Logit lens vs TransformerLens and nnsight" in text


def test_widget_latency_bench_measures_every_view(capsys):
    from bench import widgets

    results = widgets.main(["--quick"])
    names = {key.split(":")[0] for key in results}
    assert names == {"ProbeCurves", "CircularMap", "ConceptProjection", "SteeringPanel"}
    assert all(value > 0 for value in results.values())


def test_lens_benchmark_quick_mode_times_reprlab_and_the_peers_it_has(capsys):
    """Peers it cannot import are reported as unavailable, unless REPRLAB_REQUIRE_PEERS=1 (as
    ``make test`` sets, since it installs them) makes that a failure."""
    import importlib.util
    import os

    from bench import lens

    results = lens.main(["--quick"])
    printed = capsys.readouterr().out
    assert all(key in printed for key in results)
    (ours,) = [v for k, v in results.items() if k.startswith("reprlab s (median")]
    assert ours > 0
    peak = next(k for k in results if k.startswith("reprlab lens peak RSS MB"))
    assert results[peak] > 0
    installed = {"TransformerLens": "transformer_lens", "nnsight": "nnsight"}
    for name, module in installed.items():
        if importlib.util.find_spec(module) is None:
            if os.environ.get("REPRLAB_REQUIRE_PEERS") == "1":
                pytest.fail(f"{module} not installed: pip install -c constraints.txt -e "
                            "'.[peers]'")
            assert f"{name}: unavailable" in results
            continue
        assert f"{name}: unavailable" not in results
        ratio = next(k for k in results if k.startswith(f"ratio reprlab vs {name} speed"))
        assert results[ratio] > 0
        for key in ("max |top-k prob diff|", "max |KL diff|"):
            assert results[f"{name} {key} vs reprlab (target <= 1e-4)"] < 1e-4
        assert results[f"{name} top-1 id agreement vs reprlab"] == 1.0
