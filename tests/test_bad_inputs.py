"""Bad-input sweep: every public kernel function and every widget control that takes free input.

Each bad call raises (kernel) or shows (widget) an error that names what was wrong, and
afterwards the session, its registry and its activation cache are as they were and usable.
"""

import dataclasses
import re

import numpy as np
import pytest
import torch

from reprlab import (
    Direction,
    ModelRef,
    Session,
    Steer,
    circular_analysis,
    datasets,
    logit_shift,
    probe_curve,
)

# --- kernel --------------------------------------------------------------------------------

S = Session.tiny(seed=5)
D = Direction("keep", torch.randn(S.width), 2, "test")
ACTS = S.activations(["a b", "c d", "e f", "g h"], progress=False)
FOREIGN = Direction("foreign", torch.randn(7), 2, "test",
                    source=ModelRef("another-model", "f0f0", 7, 4))
OTHER = Session.tiny(seed=6)  # same width, other weights
ALIEN = Direction.mean_difference(OTHER.activations(["a", "b"], progress=False),
                                  OTHER.activations(["c", "d"], progress=False), 2, name="alien")
UNEMBEDDING = Direction("u", torch.randn(S.width), None, "test", space="unembedding")

KERNEL_CASES = {
    "no texts": (lambda: S.activations([]), "empty"),
    "one string, not a list": (lambda: S.activations("hello"), "wrap it"),
    "blank text": (lambda: S.activations(["ok", " "]), r"texts\[1\] is empty"),
    "unknown layer": (lambda: S.activations(["x"], layers=[9]), "out of range.*0..4"),
    "word not in text": (lambda: S.activations(["a cat"], at="dog"), "'dog' not found"),
    "token index too far": (lambda: S.activations(["a"], at=50), "out of range"),
    "bad batch size": (lambda: S.activations(["x"], batch_size=0), "batch_size"),
    "bad dtype": (lambda: S.activations(["x"], dtype=torch.int8), "float32, float16"),
    "bad memory budget": (lambda: S.activations(["x"], memory_budget="lots"), "as a size"),
    "blank token text": (lambda: S.token_activations(""), "empty"),
    "labels mismatch": (lambda: probe_curve(ACTS, ["x", "y"]), "2 entries but .* 4 texts"),
    "one class": (lambda: probe_curve(ACTS, ["x"] * 4), "one class only"),
    "folds < 2": (lambda: probe_curve(ACTS, ["x", "y"] * 2, folds=1), "folds must be >= 2"),
    "unknown data set": (lambda: datasets.load("nope"), "available: days"),
    "dataset direction, bad layer": (lambda: Direction.from_dataset(S, "sentiment", 99),
                                     "out of range"),
    "dataset direction, bad method": (
        lambda: Direction.from_dataset(S, "sentiment", 2, method="magic"), "unknown method"),
    "empty side of a mean difference": (
        lambda: Direction.mean_difference(ACTS.select(rows=[]), ACTS, 2), "positive set is empty"),
    "no pairs": (lambda: Direction.counterfactual(S, []), "pair"),
    "zero vector": (lambda: Direction("z", torch.zeros(S.width), 2, "t"), "zero"),
    "direction from another model": (lambda: FOREIGN.project(ACTS), "7 dims .* has 64"),
    "direction from a model of the same width": (lambda: ALIEN.project(ACTS), "another model"),
    "steer with a direction of the same width from another model": (
        lambda: S.generate("hi", 3, steer=Steer(ALIEN, alpha=1)), "another model"),
    "register a direction of another width": (lambda: S.directions.add(FOREIGN), "7 dims"),
    "register a direction from another model": (lambda: S.directions.add(ALIEN),
                                                "another model"),
    "unembedding direction read without a layer": (lambda: UNEMBEDDING.project(ACTS),
                                                   "pass layer="),
    "unembedding direction read without a layer or session": (
        lambda: UNEMBEDDING.project(dataclasses.replace(ACTS, source=None)), "pass layer="),
    "unknown inner product": (lambda: D.project(ACTS, inner="hyperbolic"),
                              "euclidean, standardized, causal"),
    "inner product on hand-made activations": (
        lambda: D.project(dataclasses.replace(ACTS, source=None), inner="causal"),
        "session.activations"),
    "unknown cycle": (lambda: circular_analysis(S, "weeks"), "available"),
    "template without slot": (lambda: circular_analysis(S, "days", templates=["no slot"]), "'{}'"),
    "template with the item first": (
        lambda: circular_analysis(S, "days", templates=["{} is a day"]), "item first"),
    "steer at unknown layer": (lambda: S.generate("hi", 3, steer=Steer(D, layer=99, alpha=1)),
                               "out of range"),
    "steer mode": (lambda: Steer(D, layer=2, alpha=1, mode="multiply"), "'add' or 'ablate'"),
    "steer alpha nan": (lambda: Steer(D, layer=2, alpha=float("nan")), "finite"),
    "steer with a foreign direction": (
        lambda: S.generate("hi", 3, steer=Steer(FOREIGN, layer=2, alpha=1)), "another model"),
    "not a steer": (lambda: S.generate("x", steer="not a steer"), "Steer"),
    "empty prompt": (lambda: S.generate("  "), "prompt is empty"),
    "empty prompt, logit shift": (lambda: logit_shift(S, "", Steer(D, layer=2, alpha=1)),
                                  "prompt is empty"),
    "no new tokens": (lambda: S.generate("x", max_new_tokens=0), "max_new_tokens"),
    "seed overflow": (lambda: S.generate("x", 3, seed=2**70), "seed must be an integer"),
    "top_p": (lambda: S.generate("x", 3, top_p=0), "top_p"),
    "missing layer in activations": (lambda: ACTS.layer(99), "available"),
    "remove unknown direction": (lambda: S.directions.remove("missing"), "registered"),
    "register a non-direction": (lambda: S.directions.add("nope"), "expected a Direction"),
    "model that cannot be loaded": (lambda: Session.load("/nonexistent/model"), "not found"),
    # issue 15, section "Low": each says what was wrong and what to pass
    "text beyond the context": (lambda: S.activations(["ab" * 300]),
                                "600 tokens but this model reads at most 512: shorten it"),
    "prompt beyond the context": (lambda: S.generate("ab" * 300, 3),
                                  "reads at most 512: shorten the prompt"),
    "logit shift beyond the context": (lambda: logit_shift(S, "ab" * 300, Steer(D, alpha=1)),
                                       "reads at most 512: shorten it"),
    "alpha 1e30": (lambda: Steer(D, alpha=1e30), "not a sensible strength.*usually below 10"),
    "alpha as text": (lambda: Steer(D, alpha="0.5"), "alpha must be a number such as 0.5"),
    "alpha None": (lambda: Steer(D, alpha=None), "alpha must be a number such as 0.5"),
    "alpha array": (lambda: Steer(D, alpha=np.ones(2)), "alpha must be a number such as 0.5"),
    "alpha complex": (lambda: Steer(D, alpha=1j), "alpha must be a number such as 0.5"),
    "temperature 1e-45": (lambda: S.generate("x", 3, temperature=1e-45),
                          "too small.*pass 0 for greedy"),
    "temperature NaN": (lambda: S.generate("x", 3, temperature=float("nan")),
                        "temperature must be finite: pass a number such as 0.7"),
    "negative seed": (lambda: S.generate("x", 3, seed=-1), "seed must be an integer from 0"),
    "float layer": (lambda: S.activations(["x"], layers=1.0), "an int such as 3"),
    "float layer in a list": (lambda: S.activations(["x"], layers=[1.0]), "ints such as 3"),
    "batch_size None": (lambda: S.activations(["x"], batch_size=None),
                        "batch_size must be a whole number such as 1"),
    "fractional max_new_tokens": (lambda: S.generate("x", 2.5),
                                  "max_new_tokens must be a whole number"),
    "nested at": (lambda: S.activations(["x"], at=[["last"]]), "one position per text"),
    "memory budget NaN": (lambda: S.activations(["x"], memory_budget=float("nan")),
                          "positive number of bytes or a size such as '2GB'"),
    "memory budget inf": (lambda: S.activations(["x"], memory_budget=float("inf")),
                          "positive number of bytes or a size such as '2GB'"),
    "memory budget ...": (lambda: S.activations(["x"], memory_budget="..."), "e.g. '500MB'"),
    "probe C inf": (lambda: probe_curve(ACTS, ["x", "y"] * 2, C=float("inf")),
                    "C must be finite: pass a number such as 0.01"),
    "probe seed -1": (lambda: probe_curve(ACTS, ["x", "y"] * 2, seed=-1),
                      "seed must be an integer from 0"),
    "no shuffles for the control": (lambda: probe_curve(ACTS, ["x", "y"] * 2, 2, n_permutations=0),
                                    r"n_permutations must be >= 1 \(100 makes"),
    "infinite direction": (lambda: Direction("inf", torch.full((S.width,), float("inf")), 2, "t"),
                           "infinite entries: pass a finite vector"),
    "text as a direction vector": (lambda: Direction("txt", "abc", 2, "t"),
                                   "tensor or an array of numbers"),
    "empty model name": (lambda: Session.load(""), "empty: pass nothing for the embedded model"),
}


@pytest.mark.parametrize("case", list(KERNEL_CASES))
def test_kernel_bad_input_raises_a_clear_error(case):
    call, words = KERNEL_CASES[case]
    with pytest.raises(Exception) as info:
        call()
    assert re.search(words, str(info.value)), f"{case}: {info.value!r} lacks {words!r}"
    assert not isinstance(info.value, (RuntimeError, AttributeError)) or \
        type(info.value).__name__ == "ModelLoadError", f"{case}: raw {type(info.value).__name__}"


def test_session_registry_and_cache_survive_the_whole_kernel_sweep():
    S.directions.add(D)
    cached = S.cache_entries
    for call, _ in KERNEL_CASES.values():
        with pytest.raises((ValueError, TypeError, KeyError, IndexError, RuntimeError)):
            call()
    assert S.directions.names() == ["keep"] and S.directions["keep"] is D
    assert S.cache_entries >= cached and S.backend.hook_count() == 0
    hits = S.cache_hits
    again = S.activations(["a b", "c d", "e f", "g h"], progress=False)
    assert torch.equal(again.values, ACTS.values) and S.cache_hits == hits + 1  # from cache
    assert S.generate("x", 3) == S.generate("x", 3)


def test_numpy_numbers_and_units_people_type_are_accepted(monkeypatch):
    acts = S.activations(["a b", "c d"], layers=np.int64(1), batch_size=np.int64(2))
    assert acts.layers == (1,)
    assert S.generate("x", np.int64(3), seed=np.int64(3)) == S.generate("x", 3, seed=3)
    monkeypatch.setenv("REPRLAB_MEMORY_BUDGET", "2G")
    assert not S.activations(["a b"], cache=False).on_disk
    from reprlab.store import default_budget

    assert default_budget() == 2 * 10**9


def test_a_bad_memory_budget_variable_is_named(monkeypatch):
    monkeypatch.setenv("REPRLAB_MEMORY_BUDGET", "lots")
    with pytest.raises(ValueError, match="REPRLAB_MEMORY_BUDGET='lots'.*e.g. '500MB'"):
        S.activations(["a b"], cache=False)


def test_numpy_integer_and_huge_vectors_make_unit_directions():
    for vector in (np.arange(1, S.width + 1), torch.arange(1, S.width + 1),
                   torch.full((S.width,), 3e38)):
        d = Direction("v", vector, 2, "t")
        assert d.vector.dtype == torch.float32 and abs(float(d.vector.norm()) - 1) < 1e-6


def test_max_new_tokens_beyond_the_context_is_capped_with_a_warning():
    with pytest.warns(UserWarning, match="past the model's context of 512 tokens: generating 12"):
        tokens = list(S.stream("ab" * 250, 100))
    assert len(tokens) <= 12


# --- widgets -------------------------------------------------------------------------------


def text_of(view) -> str:
    return re.sub("<[^>]+>", "", view.status.value).replace("&#x27;", "'")


@pytest.fixture
def session():
    return Session.tiny(seed=0)


class Snapshot:
    """What the user built: registered directions (by identity) and cached activations."""

    def __init__(self, session):
        self.session = session
        self.directions = {n: session.directions[n] for n in session.directions.names()}
        self.cache_entries = session.cache_entries

    def assert_kept(self):
        s = self.session
        assert {n: s.directions[n] for n in s.directions.names()} == self.directions
        assert s.cache_entries >= self.cache_entries and s.backend.hook_count() == 0


def test_probe_curves_bad_inputs(session):
    from reprlab.widgets import ProbeCurves

    w = ProbeCurves(session, background=False)
    w.use.click()  # one direction the user built
    before, curve = Snapshot(session), w.result
    w.position.value = "word"
    w.word.value = "zebra"
    assert "Error" in w.status.value and "'zebra' not found" in text_of(w)
    w.word.value = "   "
    assert "Type a word" in text_of(w)
    w.position.value = "last"
    w.name.value = session.directions.names()[0]  # a name taken by another layer's probe
    w.layer.value = (w.layer.value + 1) % (session.n_blocks + 1)
    w.use.click()
    assert "exists: pick another name" in text_of(w)
    assert w.result is curve or w.result.scores.tolist() == curve.scores.tolist()
    before.assert_kept()
    w.name.value = "mine"
    assert w.use_as_direction().name == "mine"


@pytest.mark.parametrize("texts, labels, words", [
    ([], [], "empty"),
    (["a", "b", "c"], [0, 1], "3 texts but 2 labels"),
    (["a", "b", "c", "d"], [1, 1, 1, 1], "one class"),
])
def test_probe_curves_refuses_bad_user_data_at_construction(session, texts, labels, words):
    from reprlab.widgets import ProbeCurves

    with pytest.raises(ValueError, match=words):
        ProbeCurves(session, texts=texts, labels=labels, background=False)


def test_concept_projection_bad_inputs(session):
    from reprlab.widgets import ConceptProjection

    w = ConceptProjection(session, background=False)
    before, result = Snapshot(session), w.result
    w.text.value = "   "
    assert "Type a text" in w.tokens.value and "Error" not in w.status.value
    w.source.value = "pairs: country_capital (unembedding)"
    w.build()
    assert "single tokens" in text_of(w)
    before.assert_kept()
    w.text.value = "back to normal"
    assert w.result is not result and "Error" not in w.status.value


def test_concept_projection_never_overwrites_a_different_direction(session):
    from reprlab.widgets import ConceptProjection, ProbeCurves

    probes = ProbeCurves(session, background=False)
    probes.layer.value = 1
    probes.use.click()  # 'sentiment@1', a probe direction
    probe_direction = session.directions["sentiment@1"]
    w = ConceptProjection(session, background=False)
    w.layer.value = 1
    w.source.value = "sentiment: mean difference"
    w.build()  # would be called 'sentiment@1' too
    assert session.directions["sentiment@1"] is probe_direction
    assert "sentiment@1-2" in session.directions.names()
    w.build()  # the same direction again replaces its own copy, no new name
    assert session.directions.names().count("sentiment@1-3") == 0


def test_circular_map_bad_inputs(session):
    from reprlab.widgets import CircularMap

    w = CircularMap(session, background=False, warm=False, n_permutations=50)
    before, result = Snapshot(session), w.result
    w.cycle.value = "custom"
    for bad, words in [("", "at least four"), ("a, b", "at least four"),
                       ("x, y, z, w, x", "distinct")]:
        w.custom.value = bad
        assert words in text_of(w), bad
        assert w.result is result
    before.assert_kept()
    w.custom.value = "red, orange, yellow, green"
    assert w.result.cycle == "custom"


def test_steering_panel_bad_inputs(session):
    from reprlab.widgets import SteeringPanel

    w = SteeringPanel(session, background=False)
    before = Snapshot(session)
    for control, bad, words in [("prompt", "  ", "prompt is empty"),
                                ("seed", str(2**64), "seed must be an integer")]:
        widget, result = getattr(w, control), w.result
        good = widget.value
        widget.value = bad
        assert "Error" in w.status.value and words in text_of(w), control
        assert w.result is result
        widget.value = good
    before.assert_kept()
    assert "tokens differ" in text_of(w)
    for name in session.directions.names():
        session.directions.remove(name)
    assert "No direction yet" in text_of(w) and session.backend.hook_count() == 0


def test_views_show_export_errors_before_they_have_a_result(session, tmp_path, monkeypatch):
    from reprlab.widgets import ProbeCurves

    monkeypatch.chdir(tmp_path)  # a default-named export would land here
    w = ProbeCurves(session, background=False)
    w.result = None  # as before its first result
    w.export_csv_button.click()
    assert "nothing to export yet" in text_of(w)
    assert list(tmp_path.iterdir()) == []


def test_explorer_bad_model_keeps_everything_built(session):
    from reprlab.widgets import Explorer

    e = Explorer(session, background=False)
    e.view(0).use.click()
    before = Snapshot(session)
    for bad in ("/nonexistent/model", "./README.md"):
        e.model_box.value = bad
        e.load_button.click()
        assert "Could not load" in e.model_status.value and bad in e.model_status.value
        assert e.session is session and not e.load_button.disabled
    before.assert_kept()
    assert e.view(0).use_as_direction() is not None  # the views still work
