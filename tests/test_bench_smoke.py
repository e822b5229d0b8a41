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


def test_widget_latency_bench_measures_every_view(capsys):
    from bench import widgets

    results = widgets.main(["--quick"])
    names = {key.split(":")[0] for key in results}
    assert names == {"ProbeCurves", "CircularMap", "ConceptProjection", "SteeringPanel"}
    assert all(value > 0 for value in results.values())
