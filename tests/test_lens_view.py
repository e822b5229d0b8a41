"""The Lens tab: a prompt's layer x token grid, its pinned top-10, generation that adds columns,
a direction in words, bad inputs in the status line; on the tiny model, checked against the
kernel's own lens result."""

import html
import re
import time

import pytest
import torch

from reprlab import Direction, Session, lens
from reprlab.widgets import Explorer, LensView
from reprlab.widgets.lens_figures import SHADES, readable_token


@pytest.fixture
def session():
    return Session.tiny(seed=0)


def plain(widget) -> str:
    return html.unescape(re.sub("<[^>]+>", "", widget.value))


def test_the_grid_shows_the_kernels_top_token_per_layer_and_token(session):
    v = LensView(session, prompt="hello world", background=False)
    expected = lens(session, ["hello world"])
    heat = v.grid.data[0]
    assert len(v.columns) == expected.n_rows == len(heat.x)
    assert list(heat.y) == list(expected.layers)
    assert torch.allclose(torch.tensor(heat.z, dtype=torch.float32),
                          expected.top_probs[:, :, 0], atol=1e-6)
    custom = heat.customdata  # [layers, columns, (top token, p, KL, entropy)]
    li = expected.layers.index(2)
    assert custom[li][3][0] == readable_token(expected.top_tokens[li][3][0])
    assert "settles" in plain(v.summary)


def test_every_shade_redraws_from_cache_without_a_model_call(session):
    v = LensView(session, prompt="a few tokens here", background=False)
    calls = session.model_calls
    for shade in SHADES:
        if shade == "target":
            continue
        t = time.perf_counter()
        v.shade.value = shade
        assert time.perf_counter() - t < 1.0
        title = v.grid.figure.layout.title.text
        assert SHADES[shade][0] in title
    kl = v.columns[0][0].kl_to_final
    v.shade.value = "KL to final"
    assert torch.allclose(torch.tensor(v.grid.data[0].z, dtype=torch.float32), kl, atol=1e-6)
    assert session.model_calls == calls


def test_clicking_a_cell_pins_its_top_ten(session):
    v = LensView(session, prompt="hello world", background=False)
    v._on_click({"x": 2, "y": 3})
    r = v.columns[2][0]
    li = r.layers.index(3)
    table = plain(v.cell)
    assert v.selected == (2, 3) and "Layer 3" in table
    for p in r.top_probs[li, 2].tolist()[:3]:
        assert f"{p:.3g}"[:4] in table
    shapes = [s for s in v.grid.figure.layout.shapes if s.name == "selected"]
    assert len(shapes) == 1 and shapes[0].x0 == 1.5 and shapes[0].y0 == 2.5
    v._on_click({"x": None, "y": None})  # the legend: nothing changes
    assert v.selected == (2, 3)


def test_a_target_is_scored_and_a_word_of_several_tokens_is_refused_in_the_status_line(session):
    v = LensView(session, prompt="hello world", background=False)
    before = v.result
    v.target.value = "hello"  # five pieces in the character-level tiny tokenizer
    assert "5 tokens" in plain(v.status) and "'h'" in plain(v.status)
    assert v.result is before and v.stale  # nothing lost; marked not updated
    v.target.value = "h"
    assert plain(v.status) == "" and v.result.target_prob is not None
    v.shade.value = "target"
    assert torch.allclose(torch.tensor(v.grid.data[0].z, dtype=torch.float32),
                          v.result.target_prob, atol=1e-6)


def test_an_empty_prompt_says_so_and_the_next_prompt_works(session):
    v = LensView(session, prompt="hello", background=False)
    v.prompt.value = "   "
    assert "empty" in plain(v.status)
    v.prompt.value = "world"
    assert plain(v.status) == "" and v.result.texts == ("world",)


def test_generate_adds_one_column_per_new_token_past_the_prompt(session):
    pieces = [t.text for t in session.stream("hello", max_new_tokens=6)]
    v = LensView(session, prompt="hello", background=False)
    n_prompt = len(v.columns)
    v.new_tokens.value = 6
    seen = []
    v.grid.observe(lambda change: seen.append(len(v.columns)), "spec")
    v.generate()
    assert v.generated_from == n_prompt
    written = [p for p in pieces if p]  # a part of a character arrives with the next token
    assert len(v.columns) == n_prompt + len(written) > n_prompt
    # one draw as each token arrived (the final render draws the same figure again)
    assert [n for n in seen if n > n_prompt] == list(range(n_prompt + 1, len(v.columns) + 1))
    last, row = v.columns[-1]
    assert last.texts[0] == "hello" + "".join(pieces)
    rows = v.rows()
    assert {r["generated"] for r in rows} == {False, True}
    assert len(rows) == len(v.columns) * len(last.layers)


def test_a_registered_direction_is_shown_in_words_beside_its_null(session):
    # a small reference set (the built-in one takes the tiny model ~10 s to read)
    session.geometry.set_reference(session.activations([f"text number {i}" for i in range(40)]))
    v = LensView(session, prompt="hello", background=False)
    assert "Pick a direction" in plain(v.words)
    d = Direction("tok", session.backend.unembedding[7].float(), layer=session.n_blocks,
                  method="manual", source=session.ref)
    session.directions.add(d)
    assert "tok" in v.direction.options
    v.direction.value = "tok"
    words = plain(v.words)
    assert "tok in words" in words and "random directions" in words
    assert "promotes" in words and "suppresses" in words


def test_the_explorer_has_a_lens_tab(session):
    e = Explorer(session, background=False)
    view = e.view("Lens")
    assert isinstance(view, LensView) and view.result is not None
    assert e.tabs.get_title(4) == "Lens"


def test_every_lens_control_has_help(session):
    v = LensView(session, prompt="hello", background=False)
    for control in (v.prompt, v.lens_kind, v.shade, v.target, v.new_tokens,
                    v.generate_button, v.direction):
        assert control.tooltip and len(control.tooltip) > 20


# -- fitted lenses: the Fit button --------------------------------------------------------------

TEXTS = [f"sentence {i} says something about the number {i * 7} and more" for i in range(6)]
QUICK = {"texts": TEXTS[:4], "heldout": TEXTS[4:], "steps": 5, "batch_tokens": 8, "skip": 2}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRLAB_CACHE", str(tmp_path))
    return tmp_path


def test_a_lens_without_a_fit_offers_the_fit_button_and_shows_the_lens_once_fitted(session, cache):
    v = LensView(session, prompt="hello world", background=False, fit_options=QUICK)
    logit = v.result
    v.lens_kind.value = "tuned"
    assert v.fit_button.layout.display == "" and "Fit tuned lens" in v.fit_button.description
    assert "No tuned lens is fitted" in plain(v.status) and v.result is logit  # nothing lost
    v.fit_button.click()
    assert v.fit_button.layout.display == "none" and v.result.lens == "tuned"
    assert list(cache.glob("lenses/*/tuned.safetensors"))
    expected = lens(session, ["hello world"], lens="tuned")
    assert torch.allclose(torch.tensor(v.grid.data[0].z, dtype=torch.float32),
                          expected.top_probs[:, :, 0], atol=1e-6)
    v.lens_kind.value = "logit"
    assert v.result is logit  # from the cache


def test_cancelling_a_fit_saves_nothing_and_says_so(session, cache):
    v = LensView(session, prompt="hello world", background=True,
                 fit_options={**QUICK, "steps": 100_000})
    v.wait()
    v.lens_kind.value = "tuned"
    v.fit_button.click()
    deadline = time.time() + 60
    while not v.busy and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    v.fit_button.click()  # "Cancel fit"
    v.wait()
    assert "cancelled" in plain(v.status) and not list(cache.glob("lenses/*/*.safetensors"))
    assert "Fit tuned lens" in v.fit_button.description and not v.busy
