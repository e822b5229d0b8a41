"""Classroom fixes (issue 16): each bug's test drives the views in Python, on a tiny model."""

import datetime
import re

import ipywidgets as W
import numpy as np
import pytest
import torch

from reprlab import Direction, Session
from reprlab.geometry import SimilarityMatrix, TokenProjection
from reprlab.widgets import ConceptProjection, Explorer, ProbeCurves, SteeringPanel
from reprlab.widgets.figures import (
    NEGATIVE,
    POSITIVE,
    class_colors,
    fmt,
    similarity_heatmap,
    text_color,
    token_html,
)


@pytest.fixture
def session():
    return Session.tiny(seed=0)


def plain(widget) -> str:
    return re.sub("<[^>]+>", "", widget.value).replace("&#x27;", "'")


# -- bug 3: the token strip wraps; byte-fallback tokens read as their character --------------

def test_token_strip_wraps_like_text_instead_of_clipping_on_one_line():
    words = ("The movie was wonderful, but the ending was terrible and " * 4).split(" ")
    tokens = tuple(" " + w for w in words)
    proj = TokenProjection("".join(tokens), tokens, np.linspace(-1, 1, len(tokens)), 3,
                           "euclidean", "mood")
    strip = token_html(proj)
    assert "&nbsp;" not in strip and "nowrap" not in strip
    assert "white-space:normal" in strip and "overflow-wrap:anywhere" in strip
    assert strip.count("class='reprlab-token'") == len(tokens)


def test_byte_fallback_tokens_show_their_bytes_in_the_token_strip(session):
    w = ConceptProjection(session, background=False)
    w.text.value = "café 映"
    assert "\ufffd" not in w.tokens.value and "&lt;0xC3&gt;" in w.tokens.value


# -- bug 4: numbers for people ------------------------------------------------------------------

def test_fmt_gives_three_significant_digits_without_float_noise():
    assert fmt(np.float32(0.16)) == "0.16" and fmt(0.1599999964237213, 2) == "0.16"
    assert fmt(-0.0) == "0" and fmt(24.0) == "24" and fmt(float("nan")) == "n/a"
    assert fmt(123456.0) == "1.23e+05"


def test_heatmap_labels_and_exported_html_show_no_float_noise(session, tmp_path):
    values = np.array([[1.0, 0.16], [0.16, 1.0]], dtype=np.float32)  # 0.1599999964237213
    fig = similarity_heatmap(SimilarityMatrix(("a", "b"), values, "causal"))
    labels = [t for row in fig.data[0].text for t in row]
    assert labels == ["1", "0.16", "0.16", "1"]
    html_text = fig.to_html(include_plotlyjs=False)
    assert "0.1599999964237213" not in re.sub(r'"z":\[\[.*?\]\]', "", html_text)


def test_steering_tables_and_view_statuses_show_short_numbers(session):
    w = SteeringPanel(session, background=False)
    probes = ProbeCurves(session, background=False)
    for text in (w.shift.value, w.unit.value, probes.status.value):
        text = re.sub("<[^>]+>", " ", text)
        for number in re.findall(r"\d+\.\d+", text):
            assert len(number.replace(".", "").lstrip("0")) <= 3, (number, text)


# -- bug 6: the Explorer's header follows the registry and the cache -----------------------------

def test_explorer_header_counts_a_new_direction_and_cache_at_once(session):
    e = Explorer(session, background=False)
    assert "directions: 0" in e.header.value
    session.directions.add(Direction("mood", torch.randn(session.width), 2, "test"))
    assert "directions: 1" in e.header.value
    before = session.cache_entries
    e.view(0).dataset.value = "truth"  # new activations in the cache, no tab switch
    assert session.cache_entries > before
    assert f"cache: {session.cache_entries} activation sets" in e.header.value


# -- bug 7: read at "word" says what it needs and offers a word ----------------------------------

def test_read_at_word_with_an_empty_box_hides_the_old_curve_and_offers_a_word(session):
    w = ProbeCurves(session, background=False)
    shown = w.result
    w.position.value = "word"
    assert w.figure_row.layout.visibility == "hidden"  # the 'last' curve is not shown as 'word'
    assert "every text" in plain(w.status) and "'.'" in plain(w.status)
    assert "." in w.word.options
    assert w.use_as_direction() is None and "no probe for this setting" in plain(w.status)
    w.word.value = "."
    assert w.figure_row.layout.visibility == "visible" and w.acts.at == "."
    assert w.result is not shown
    assert "read at '.'" in w.curve_fig.figure.layout.title.text


def test_read_at_a_word_missing_from_some_texts_says_how_many(session):
    w = ProbeCurves(session, background=False)
    w.position.value = "word"
    w.word.value = "movie"
    text = plain(w.status)
    assert "Error" in text and re.search(r"'movie' not found in \d+ of 240 texts", text)
    assert w.figure_row.layout.visibility == "hidden"


# -- bug 8: "→ Steering" says why it did nothing -----------------------------------------------

def test_send_to_steering_with_a_taken_name_says_why_beside_the_button(session):
    e = Explorer(session, background=False)
    e.view(0).name.value = "mine"
    assert e.send_to_steering().name == "mine"
    e.tabs.selected_index = 0
    assert e.send_to_steering() is None
    assert e.tabs.selected_index == 0
    assert "Not sent to Steering" in e.send_status.value and "exists" in plain(e.send_status)


# -- bug 10: seeds are parsed strictly ----------------------------------------------------------

def test_seed_in_scientific_notation_is_refused_with_a_clear_error(session):
    w = SteeringPanel(session, background=False)
    result = w.result
    w.seed.value = "1e3"
    assert "Error" in w.status.value and "'1e3' is not a whole number" in plain(w.status)
    assert w.result is result
    w.seed.value = "1000"
    assert w.result is not result and "Error" not in w.status.value


# -- explaining itself ----------------------------------------------------------------------------

def _controls(widget):
    if isinstance(widget, (W.IntSlider, W.FloatSlider, W.Dropdown, W.ToggleButtons, W.Text,
                           W.Textarea, W.Select, W.FileUpload, W.Button)):
        yield widget
    for child in getattr(widget, "children", ()):
        yield from _controls(child)


def test_every_control_of_every_tab_has_help_text(session):
    e = Explorer(session, background=False)
    for i in range(4):
        e.view(i)
    missing = [f"{type(c).__name__} {c.description!r}" for c in _controls(e)
               if not (c.tooltip or "").strip() and c.description not in ("Yes, remove",
                                                                         "Yes, reset", "Cancel")]
    assert not missing, missing


def test_every_figure_has_axis_titles_and_a_caption(session):
    from reprlab.widgets import CircularMap

    views = [ProbeCurves(session, background=False), ConceptProjection(session, background=False),
             CircularMap(session, background=False, warm=False, n_permutations=50)]
    for view in views:
        for fig in view.figures():
            layout = fig.layout
            assert layout.xaxis.title.text and layout.yaxis.title.text, layout.title.text
            assert layout.title.subtitle.text, layout.title.text


def test_positive_and_true_share_one_color_in_every_view(session):
    assert class_colors(["positive", "negative"]) == {"positive": POSITIVE, "negative": NEGATIVE}
    assert class_colors(["false", "true"]) == {"false": NEGATIVE, "true": POSITIVE}
    probes = ProbeCurves(session, background=False)
    projection = ConceptProjection(session, background=False)
    by_name = {t.name: t.marker.color for t in probes.layer_fig.data}
    assert by_name == {"negative": NEGATIVE, "positive": POSITIVE}
    assert {t.name: t.marker.color for t in projection.hist_fig.data} == by_name
    assert projection.sim_fig.data[0].colorscale[-1][1] == POSITIVE
    probes.dataset.value = "truth"
    assert {t.name: t.marker.color for t in probes.layer_fig.data} == {
        "false": NEGATIVE, "true": POSITIVE}


def test_token_colors_have_a_legend_and_readable_text_on_saturated_cells():
    assert text_color((0, 114, 178)) == "#fff" and text_color((247, 247, 247)) == "#000"
    proj = TokenProjection("a b c", ("a", " b", " c"), np.array([0.0, -5.0, 5.0]), 1,
                           "euclidean", "mood")
    strip = token_html(proj)
    assert "color:#fff" in strip  # the saturated cells
    assert "−5" in strip and "+5" in strip and "blue tokens point along" in strip


def test_steering_changes_are_marked_by_more_than_color(session):
    w = SteeringPanel(session, background=False)
    w.alpha.value = 1.0
    assert "differ from the baseline" in plain(w.status)
    assert not re.search(r"\b0 of", plain(w.status))
    changed = w.steered.value.split("reprlab-changed")[1]
    assert "underline" in changed and "font-weight:600" in changed


# -- the registry from the UI; Reset; your own data --------------------------------------------

def test_directions_are_renamed_and_removed_from_the_ui_and_views_follow(session):
    e = Explorer(session, background=False)
    projection = e.view(1)
    manager = e.manager
    name = projection.direction.value
    manager.list.value = name
    manager.new_name.value = "mood"
    manager.rename()
    assert session.directions.names() == ["mood"] and projection.direction.value == "mood"
    assert "Renamed" in manager.status.value
    manager.new_name.value = "mood"
    session.directions.add(Direction("other", torch.randn(session.width), 2, "test"))
    manager.list.value = "other"
    manager.rename()
    assert "exists" in manager.status.value and "other" in session.directions
    manager.remove_button.click()
    assert "other" in session.directions and manager.confirm.layout.display == ""
    manager.confirm.click()
    assert session.directions.names() == ["mood"] and projection.direction.value == "mood"
    assert "directions: 1" in e.header.value


def test_reset_asks_first_then_clears_results_but_keeps_directions(session):
    e = Explorer(session, background=False)
    probes = e.view(0)
    probes.name.value = "kept"
    probes.use_as_direction()
    e.reset_button.click()
    assert e.views[0] is probes and e.confirm_reset.layout.display == ""
    e.confirm_reset.click()
    assert e.views[0] is not probes and session.directions.names() == ["kept"]
    assert e.session is session and "kept" in plain(e.model_status) or "1 directions" in plain(
        e.model_status)


def test_a_csv_of_labelled_texts_is_probed_from_the_upload_button(session):
    rows = [f"{c} thing number {i},{c}" for i in range(8) for c in ("red", "blue")]
    content = ("text,label\n" + "\n".join(rows)).encode()
    w = ProbeCurves(session, background=False, folds=2)
    w.upload.value = ({"name": "colours.csv", "type": "text/csv", "size": len(content),
                       "content": memoryview(content),
                       "last_modified": datetime.datetime.now(datetime.timezone.utc)},)
    assert w.dataset.value == "your data" and w.result.classes == ("blue", "red")
    w.load_csv(b"words,tag\nhello,1\n", "bad.csv")
    assert "bad.csv" in plain(w.status) and "'text' and 'label'" in plain(w.status)
    assert w.result.classes == ("blue", "red")


def test_word_pairs_typed_in_the_ui_build_a_direction(session):
    from reprlab.widgets.projection import YOUR_PAIRS, parse_pairs

    assert parse_pairs("king:queen, man woman\nboy → girl") == [
        ("king", "queen"), ("man", "woman"), ("boy", "girl")]
    w = ConceptProjection(session, background=False)
    w.source.value = YOUR_PAIRS
    assert w.pairs.layout.display == ""
    w.pairs.value = "a b c"
    w.build()
    assert "is not a word pair" in plain(w.status)
    w.pairs.value = "a:b, c:d, e:f"  # single characters are single tokens here
    w.pairs_name.value = "letters"
    w.build()
    assert "letters" in session.directions and w.direction.value == "letters"
    assert session.directions["letters"].method == "counterfactual"
