"""Widgets driven programmatically on a tiny model: controls change the figures, errors stay in
the widget, and slider moves never rerun the model."""

import html

import numpy as np
import pytest
import torch

from reprlab import Session
from reprlab.widgets import ProbeCurves


@pytest.fixture
def session():
    return Session.tiny(seed=0)


def ys(fig):
    return [tuple(t.y) if t.y is not None else () for t in fig.data]


def test_probe_curves_draws_score_control_and_chance(session):
    w = ProbeCurves(session, background=False)
    names = [t.name for t in w.curve_fig.data]
    assert "shuffled labels" in names and "chance" in names  # the control
    line = next(t for t in w.curve_fig.data if t.name.startswith("probe"))
    assert list(line.x) == session.layers
    assert list(line.y) == pytest.approx(w.result.scores.tolist())
    assert w.layer.value == w.result.best_layer
    assert html.escape(w.result.summary()) in w.status.value and "above chance" in w.status.value


def test_changing_dataset_and_position_changes_the_traces(session):
    w = ProbeCurves(session, background=False)
    before = ys(w.curve_fig)
    w.dataset.value = "truth"
    after_dataset = ys(w.curve_fig)
    assert after_dataset != before and len(w.result.labels) == 240
    w.position.value = "mean"
    assert ys(w.curve_fig) != after_dataset and w.acts.at == "mean"


def test_moving_the_layer_redraws_from_cache_without_a_model_call(session):
    w = ProbeCurves(session, background=False)
    calls = session.model_calls
    for layer in (0, 2, 4):
        w.layer.value = layer
        assert w.layer_fig.figure.layout.title.text.startswith(f"Layer {layer}:")
        assert w.curve_fig.figure.layout.shapes[0].x0 == layer
    assert session.model_calls == calls


def test_use_as_direction_registers_and_notifies(session):
    heard = []
    session.directions.observe(lambda event, d: heard.append((event, d.name)))
    w = ProbeCurves(session, background=False)
    w.layer.value = 3
    w.name.value = "mood"
    d = w.use_as_direction()
    assert heard == [("added", "mood")] and session.directions["mood"] is d
    assert d.layer == 3 and d.method == "probe" and d.info["positive"] == "positive"


def test_bad_word_shows_an_error_and_keeps_the_previous_curve(session):
    w = ProbeCurves(session, background=False)
    curve = w.result
    w.position.value = "word"
    w.word.value = "zebra"
    assert "Error" in w.status.value and "zebra" in w.status.value
    assert w.result is curve
    w.position.value = "last"  # still usable
    assert "above chance" in w.status.value


def test_user_texts_and_labels(session):
    texts = [f"{w} item {i}" for i in range(10) for w in ("red", "blue")]
    w = ProbeCurves(session, texts=texts, labels=[t.split()[0] for t in texts], at="mean",
                    background=False, folds=2)
    assert w.dataset.value == "your data" and w.result.classes == ("blue", "red")
    # the first word is in the mean embedding: layers above chance are circled in the figure
    circled = next(t for t in w.curve_fig.data if t.name.startswith("above chance"))
    assert list(circled.x) == [layer for layer, sig in zip(w.result.layers,
                                                            w.result.significant()) if sig]
    assert 0 in circled.x and "layers above chance" in w.status.value


def test_probe_curves_says_plainly_when_no_layer_is_above_chance(session):
    texts = [f"a plain sentence number {i}" for i in range(40)]
    labels = list(np.random.default_rng(0).permutation(np.arange(40) % 2))
    w = ProbeCurves(session, texts=texts, labels=labels, background=False, folds=4)
    assert w.result.p_value > 0.05
    assert "No layer is above chance" in w.status.value
    circled = next(t for t in w.curve_fig.data if t.name.startswith("above chance"))
    assert len(circled.x) == 0


def test_mismatched_user_data_is_refused(session):
    with pytest.raises(ValueError, match="3 texts but 2 labels"):
        ProbeCurves(session, texts=["a", "b", "c"], labels=[0, 1])


def test_background_work_renders_only_the_latest_request(session):
    w = ProbeCurves(session, background=True)
    w.dataset.value = "truth"
    w.dataset.value = "sentiment"
    w.wait()
    assert len(w.result.labels) == 240 and w.result.labels[0] in ("positive", "negative")
    assert "above chance" in w.status.value


def test_concept_projection_colors_tokens_and_follows_text_and_layer(session):
    from reprlab.widgets import ConceptProjection

    w = ConceptProjection(session, background=False)
    assert w.direction.value == "sentiment@2" and "Error" not in w.status.value
    first_html, first_values = w.tokens.value, w.result.tokens.values.copy()
    w.text.value = "I hated every minute"
    assert w.tokens.value != first_html and w.result.tokens.tokens[0] == "I"
    before = w.result.tokens.values.copy()
    w.layer.value = 4
    assert w.result.tokens.layer == 4 and not np.allclose(before, w.result.tokens.values)
    assert "read at layer 4" in w.status.value
    assert not np.array_equal(first_values, w.result.tokens.values)


def test_concept_projection_lists_directions_added_elsewhere(session):
    from reprlab import Direction
    from reprlab.widgets import ConceptProjection

    w = ConceptProjection(session, background=False)
    session.directions.add(Direction("elsewhere", torch.randn(session.width), 2, "test"))
    assert "elsewhere" in w.direction.options and w.direction.value == "elsewhere"
    assert w.result.similarity.names == ("sentiment@2", "elsewhere")
    w.inner.value = "causal"
    assert w.result.similarity.inner == "causal" and w.sim_fig.data[0].z is not None


def test_concept_projection_shows_build_errors_in_the_widget(session):
    from reprlab.widgets import ConceptProjection

    w = ConceptProjection(session, background=False)
    w.source.value = "pairs: male_female (unembedding)"  # byte tokenizer: no single tokens
    w.build()
    assert "Error" in w.status.value and "single tokens" in w.status.value
    assert session.directions.names() == ["sentiment@2"]


def test_circular_map_slider_redraws_without_a_model_call(session):
    from reprlab.widgets import CircularMap

    w = CircularMap(session, background=False, warm=False, n_permutations=100)
    calls = session.model_calls
    before = [tuple(t.x) for t in w.map_fig.data]
    w.layer.value = 2
    after = [tuple(t.x) for t in w.map_fig.data]
    assert after != before and w.map_fig.figure.layout.title.text.startswith("days at layer 2")
    assert w.curve_fig.figure.layout.shapes[0].x0 == 2 and "layer 2:" in w.summary.value
    w.method.value = "circle probe"
    assert "circle probe" in w.map_fig.figure.layout.title.text
    assert session.model_calls == calls


def test_circular_map_custom_cycle_and_errors(session):
    from reprlab.widgets import CircularMap

    w = CircularMap(session, background=False, warm=False, n_permutations=100)
    w.cycle.value = "custom"
    w.custom.value = "a, b"
    assert "at least four" in w.status.value and w.result.cycle == "days"
    w.custom.value = "red, orange, yellow, green, blue"
    assert w.result.cycle == "custom" and len(w.result.items) == 5


def test_steering_panel_shows_baseline_and_steered_side_by_side(session):
    from reprlab import Steer
    from reprlab.widgets import SteeringPanel

    w = SteeringPanel(session, background=False)
    steer, tokens = w.result.steer, w.result.steered
    assert steer.alpha == 0.25 and "baseline" in w.baseline.value and "steered" in w.steered.value
    expected = session.generate(w.prompt.value, w.max_tokens.value, steer=steer)
    assert "".join(t.text for t in tokens) == expected
    assert "rose most" in w.shift.value and "alpha 1 =" in w.unit.value
    w.alpha.value = 0.0
    assert w.result.steered == w.result.baseline and "0 of" in w.status.value
    assert w.result.changed == (False,) * len(w.result.steered)
    assert isinstance(w.current_steer(), Steer)


def test_steering_panel_second_change_cancels_the_first(session):
    from reprlab import Steer
    from reprlab.widgets import SteeringPanel

    w = SteeringPanel(session, background=True, debounce=0.0)
    w.wait()
    w.max_tokens.value = 60
    w.alpha.value = 0.9   # starts a generation ...
    w.alpha.value = -0.6  # ... cancelled by this one before it finishes
    w.wait()
    steer, tokens = w.result.steer, w.result.steered
    assert steer.alpha == -0.6
    expected = session.generate(w.prompt.value, 60, steer=Steer(steer.direction, 2, -0.6))
    assert "".join(t.text for t in tokens) == expected
    assert w.steered.value.count("<b>steered</b>") == 1


def test_views_share_one_registry(session):
    from reprlab.widgets import ConceptProjection, ProbeCurves, SteeringPanel

    probes = ProbeCurves(session, background=False)
    steering = SteeringPanel(session, background=False)
    projection = ConceptProjection(session, background=False)
    probes.layer.value = 3
    probes.name.value = "from-probe"
    probes.use_as_direction()
    assert "from-probe" in steering.direction.options and steering.direction.value == "from-probe"
    assert steering.layer.value == 3 and steering.result.steer.direction.name == "from-probe"
    assert "from-probe" in projection.direction.options


def test_every_view_exports_html_and_csv(session, tmp_path):
    import csv

    from reprlab.widgets import CircularMap, ConceptProjection, ProbeCurves, SteeringPanel

    views = [ProbeCurves(session, background=False),
             ConceptProjection(session, background=False),
             CircularMap(session, background=False, warm=False, n_permutations=50),
             SteeringPanel(session, background=False)]
    for view in views:
        name = type(view).__name__
        rows = list(csv.DictReader(view.export_csv(tmp_path / f"{name}.csv").open()))
        assert rows and set(view.rows()[0]) <= set(rows[0])
        text = view.export_html(tmp_path / f"{name}.html").read_text()
        assert "<script src=" not in text  # plotly.js embedded: opens offline
        assert ("Plotly.newPlot" in text) == bool(view.figures())


def test_explorer_builds_tabs_lazily_and_keeps_its_session_on_a_bad_load(session):
    from reprlab.widgets import Explorer

    e = Explorer(session, background=False)
    assert list(e.views) == [0] and "tiny-llama" in e.header.value
    direction = e.send_to_steering()
    assert e.tabs.selected_index == 3 and e.view("Steering").direction.value == direction.name
    e.load_model("/no/such/model")
    assert "model path not found" in e.model_status.value and e.session is session
    e.tabs.selected_index = 2
    assert 2 in e.views and "directions: 1" in e.header.value
