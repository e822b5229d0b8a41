"""Views that look finished on a projector (issue 23): busy and stale outputs are marked near the
controls, every control explains itself on hover, steering follows the newest direction and
says when it clips alpha, numbers read one way, and model loads leave no progress bars."""

import re

import ipywidgets as W
import numpy as np
import pytest

from reprlab import Session
from reprlab.numbers import fmt, fmt_p, fmt_score
from reprlab.widgets import CircularMap, ConceptProjection, Explorer, ProbeCurves, SteeringPanel


@pytest.fixture
def session():
    return Session.tiny(seed=0)


def plain(widget) -> str:
    return re.sub("<style>.*?</style>|<[^>]+>", "", widget.value, flags=re.S)


# -- item 4: stale figures are dimmed with "computing ..." while work runs ----------------------

def test_the_view_is_marked_busy_while_work_runs_and_unmarked_after_render_or_error(session):
    w = ProbeCurves(session, background=False)
    assert not w.busy and not w.stale and w.notice.value == ""
    seen = {}

    def work(progress):
        seen["classes"] = list(w._dom_classes)
        seen["notice"] = plain(w.notice)
        return 42

    w.submit(work, lambda value: None, busy="Fitting probes…")
    assert "reprlab-busy" in seen["classes"] and "computing" in seen["notice"]
    assert "Fitting probes" in seen["notice"]
    assert "reprlab-busy" not in w._dom_classes and w.notice.value == ""

    def failing(progress):
        seen["busy"] = w.busy
        raise ValueError("no such layer")

    w.submit(failing, lambda value: None)
    assert seen["busy"] and not w.busy and w.stale
    assert "no such layer" in plain(w.notice)
    w.submit(lambda progress: 1, lambda value: None)  # the next good render clears both
    assert not w.busy and not w.stale and w.notice.value == ""
    assert all("reprlab-output" in p._dom_classes for p in w.plots())


def test_superseded_work_leaves_the_newer_request_in_charge(session):
    w = ProbeCurves(session, background=False)
    rendered = []

    def outer(progress):
        w.submit(lambda progress: "new", rendered.append)  # a newer setting arrives mid-run
        progress(1, 2)  # raises Superseded: the old result is never drawn
        return "old"

    w.submit(outer, rendered.append)
    assert rendered == ["new"] and not w.busy and not w.stale


# -- item 5: errors beside the control, old output marked stale ----------------------------------

def test_empty_prompt_error_shows_under_the_prompt_and_marks_the_texts_stale(session):
    w = SteeringPanel(session, background=False)
    before = w.steered.value
    w.prompt.value = "   "
    assert "prompt" in plain(w.notice).lower() and "Not updated" in plain(w.notice)
    assert w.stale and "reprlab-stale" in w._dom_classes and w.steered.value == before
    assert "reprlab-output" in w.steered._dom_classes
    kids = list(w.children)
    assert kids.index(w.notice) == kids.index(w.prompt) + 1  # right under the prompt
    w.prompt.value = "The weather today is"
    assert not w.stale and w.notice.value == "" and "Error" not in w.status.value


def test_a_bad_seed_supersedes_and_is_shown_inline(session):
    w = SteeringPanel(session, background=False)
    w.seed.value = "4.5"
    assert w.stale and "not a whole number" in plain(w.notice)
    w.seed.value = "3"
    assert not w.stale


# -- item 6: every control has a tooltip that reaches the page -----------------------------------

CONTROLS = (W.Button, W.ToggleButton, W.ToggleButtons, W.Dropdown, W.Select, W.Text, W.Textarea,
            W.Combobox, W.IntText, W.FloatText, W.BoundedFloatText, W.IntSlider, W.FloatSlider,
            W.Checkbox, W.FileUpload)
# ipywidgets 8 drops `tooltip` from these when they have a description (ipywidgets#3964)
DROPPED_WHEN_DESCRIBED = (W.Dropdown, W.Select, W.Text, W.Textarea, W.Combobox, W.Checkbox)


def _controls(widget):
    if isinstance(widget, CONTROLS):
        yield widget
    for child in getattr(widget, "children", ()):
        yield from _controls(child)


def test_every_control_of_every_view_and_the_explorer_has_a_tooltip_on_the_page(session):
    e = Explorer(session, background=False)
    views = [e.view(i) for i in range(4)]
    assert {type(v) for v in views} == {ProbeCurves, ConceptProjection, CircularMap,
                                        SteeringPanel}
    controls = list(_controls(e))
    assert len(controls) > 40
    for c in controls:
        name = f"{type(c).__name__} {c.description!r}"
        assert (c.tooltip or "").strip(), name
        if isinstance(c, W.ToggleButtons):
            assert len(c.tooltips) == len(c.options) and all(t.strip() for t in c.tooltips), name
        if isinstance(c, DROPPED_WHEN_DESCRIBED) and c.description:
            # the page gets the description as HTML whose text carries the tooltip as a title
            state = c.get_state()
            assert state["description_allow_html"], name
            assert re.search(r'<span title="[^"]+">', state["description"]), name
    geometry = views[1].inner
    assert "standardized: every dimension" in geometry.tooltips[1]


def test_a_described_dropdown_keeps_its_plain_description_in_python(session):
    w = ConceptProjection(session, background=False)
    assert w.direction.description == "direction" and isinstance(w.direction, W.Dropdown)
    w.direction.tooltip = "new help"
    assert w.direction.get_state("description")["description"] == \
        '<span title="new help">direction</span>'


def test_toggle_and_button_labels_fit_and_control_rows_wrap(session):
    probes, projection = ProbeCurves(session, background=False), \
        ConceptProjection(session, background=False)
    circular = CircularMap(session, background=False, warm=False, n_permutations=20)
    assert probes.use.layout.width == "auto" and probes.upload.layout.width == "auto"
    for toggle in (projection.inner, circular.inner):
        assert int(toggle.style.button_width.rstrip("px")) >= 120  # "standardized" at 13 px
    for view in (probes, projection, circular, SteeringPanel(session, background=False)):
        rows = [c for c in view.children if isinstance(c, W.HBox) and any(
            isinstance(x, CONTROLS) for x in c.children)]
        assert rows and all(r.layout.flex_flow == "row wrap" for r in rows), type(view)


# -- item 10: steering follows the newest direction; alpha clipping is said ----------------------

def test_steering_selects_a_direction_built_in_another_view(session):
    steering = SteeringPanel(session, background=False)
    first = steering.direction.value
    projection = ConceptProjection(session, background=False)
    projection.source.value = "truth: mean difference"
    projection.build()
    newest = session.directions.names()[-1]
    assert newest != first and steering.direction.value == newest
    probes = ProbeCurves(session, background=False)
    probes.name.value = "mood"
    probes.use_as_direction()
    assert steering.direction.value == "mood"
    late = SteeringPanel(session, background=False)  # opened later: the newest, not the first
    assert late.direction.value == "mood"


def test_explorer_sends_a_probe_to_an_open_steering_tab(session):
    e = Explorer(session, background=False)
    steering = e.view(3)
    first = steering.direction.value
    sent = e.send_to_steering()
    assert sent.name != first and steering.direction.value == sent.name
    assert steering.result.steer.direction.name == sent.name


def test_a_typed_alpha_outside_the_range_is_clipped_with_a_note(session):
    w = SteeringPanel(session, background=False)
    w.alpha_box.value = "1000"
    assert w.alpha.value == 1.0 and w.alpha_box.value == "+1.00"
    note = plain(w.alpha_note)
    assert "1e+03" in note or "1000" in note
    assert "clipped to +1.00" in note and "-1 to 1" in note
    assert w.result.steer.alpha == 1.0
    w.alpha_box.value = "-0.5"
    assert w.alpha.value == -0.5 and w.alpha_note.value == ""
    w.alpha_box.value = "lots"
    assert w.alpha.value == -0.5 and "not a number" in plain(w.alpha_note)
    w.alpha.value = 0.25  # the slider moves the box along
    assert w.alpha_box.value == "+0.25" and w.alpha_note.value == ""


# -- item 11: one number format --------------------------------------------------------------

def test_one_formatter_for_scores_p_values_and_plain_numbers():
    assert fmt_score(1.0) == "1.00" and fmt_score(0.6) == "0.60"
    assert fmt_p(0.003) == "p = 0.003" and fmt_p(0.0004) == "p < 0.001"
    assert fmt_p(1 / 101, floor=1 / 101) == "p ≤ 0.0099" and fmt_p(0.5, floor=0.01) == "p = 0.5"
    assert fmt(np.float32(0.16)) == "0.16"
    from reprlab.widgets import figures

    assert figures.fmt is fmt


NOISE = re.compile(r"\d\.0*[1-9]\d{3,}|\d\.\d*[1-9]0{2,}\b")  # 0.123456 or 0.00300


def test_summaries_and_status_lines_read_without_float_noise(session):
    probes = ProbeCurves(session, background=False)
    circular = CircularMap(session, background=False, warm=False, n_permutations=20)
    texts = [probes.result.summary(), repr(probes.result), plain(probes.status),
             circular.result.summary(circular.layer.value)]
    for text in texts:
        assert not NOISE.search(text), text
        assert re.search(r"\bp (=|<|≤) ", text), text
    score = re.search(r"accuracy (\S+) ±", probes.result.summary()).group(1)
    assert re.fullmatch(r"-?\d\.\d\d", score), score
    title = probes.layer_fig.figure.layout.title.text  # "Layer 2: accuracy 0.50", not "1"
    assert re.match(r"Layer \d+: accuracy -?\d\.\d\d\b", title), title


# -- item 13: no "Loading weights" bar -----------------------------------------------------------

def test_loading_a_model_writes_no_progress_bar(session, tmp_path, capfd):
    from transformers.utils import logging as hf_logging

    session.model.save_pretrained(tmp_path, safe_serialization=True)
    session.tokenizer.save_pretrained(tmp_path)
    capfd.readouterr()
    was = hf_logging.is_progress_bar_enabled()
    loaded = Session.load(str(tmp_path))
    err = capfd.readouterr().err
    assert loaded.width == session.width
    assert "Loading weights" not in err and "it/s" not in err, err
    assert hf_logging.is_progress_bar_enabled() == was  # the setting is restored


# -- item 9: the heatmap says why a direction of another kind is not compared ------------------

def test_the_concept_heatmap_names_a_direction_built_at_another_layer(session):
    w = ConceptProjection(session, background=False)
    first = w.direction.value
    w.layer.value = 1 if session.directions[first].layer != 1 else 2
    w.source.value = "truth: mean difference"
    w.build()
    other = session.directions.names()[-1]
    assert w.direction.value == other
    title = w.sim_fig.figure.layout.title
    text = re.sub("<[^>]+>", " ", f"{title.text} {title.subtitle.text}")
    assert f"'{first}' is at layer" in text and "not compared" in text
    assert "build another" not in text


def test_signed_numbers_that_are_missing_read_as_such():
    from reprlab.numbers import fmt_signed

    assert fmt_signed(float("nan")) == "n/a" and fmt_signed(None) == ""
    assert fmt_signed(0.123) == "+0.12" and fmt_signed(-0.5) == "-0.50"
