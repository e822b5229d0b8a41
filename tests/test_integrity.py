"""Nothing poisoned, nothing leaked: the activation cache under hooks, per-text reuse, streams."""

import torch

from reprlab import Session

TEXTS = ["the cat sat", "a dog ran"]


def test_activations_under_edits_are_never_cached_or_returned_later(tiny):
    clean = tiny.activations(TEXTS, cache=False).values.clone()
    with tiny.hooks(edits={2: lambda h: h * 0}):
        inside = tiny.activations(TEXTS)
    after = tiny.activations(TEXTS)
    assert not torch.equal(inside.values, clean)
    assert torch.equal(after.values, clean) and tiny.cache_entries == 1


def test_clean_cache_is_not_read_under_edits(tiny):
    clean = tiny.activations(TEXTS).values.clone()
    with tiny.hooks(edits={2: lambda h: h * 0}):
        inside = tiny.activations(TEXTS)
    assert not torch.equal(inside.values, clean) and tiny.cache_hits == 0


def test_reference_statistics_under_edits_describe_the_unedited_model():
    edited, fresh = Session.tiny(seed=0), Session.tiny(seed=0)
    with edited.hooks(edits={1: lambda h: h * 3}):
        norm, scale = edited.geometry.typical_norm(3), edited.geometry.scale(3)
    assert norm == fresh.geometry.typical_norm(3)
    assert torch.equal(scale, fresh.geometry.scale(3))
    assert edited.cache_entries == 1  # the unedited reference may be cached


def test_subset_superset_and_reordering_of_cached_texts_reuse_them(tiny):
    texts = [f"text number {i}" for i in range(6)]
    full = tiny.activations(texts, cache=False).values
    tiny.activations(texts[:4])
    calls = tiny.model_calls
    subset = tiny.activations([texts[2], texts[0]])
    assert tiny.model_calls == calls
    torch.testing.assert_close(subset.values, full[:, [2, 0]], rtol=1e-5, atol=1e-5)
    superset = tiny.activations(texts, layers=[1, 3])
    assert tiny.model_calls == calls + 1
    torch.testing.assert_close(superset.values, full[[1, 3]], rtol=1e-5, atol=1e-5)
    assert superset.texts == tuple(texts)
    again = tiny.activations(list(reversed(texts)), layers=[3])  # both blocks, no model call
    assert tiny.model_calls == calls + 1
    torch.testing.assert_close(again.values[0], full[3].flip(0), rtol=1e-5, atol=1e-5)


def test_cached_rows_are_reused_only_for_the_same_position_and_dtype(tiny):
    tiny.activations(TEXTS)
    calls = tiny.model_calls
    tiny.activations(TEXTS, at="mean")
    tiny.activations(TEXTS, dtype=torch.float16)
    tiny.activations(TEXTS, at=["cat", "dog"])
    assert tiny.model_calls == calls + 3


# --- streams ---------------------------------------------------------------------------------


def _steer(session, alpha=4.0):
    from reprlab import Direction, Steer

    d = Direction("push", torch.randn(session.width, generator=torch.Generator().manual_seed(1)),
                  2, "test")
    return Steer(d, alpha=alpha)


def test_abandoned_steered_stream_keeps_no_hook_and_no_lock(tiny):
    import threading


    plain = tiny.generate("the cat", 10)
    it = tiny.stream("the cat", 20, steer=_steer(tiny))
    try:
        for _ in it:
            raise ValueError("user code failed")
    except ValueError:
        pass
    assert tiny.backend.hook_count() == 0
    got = []

    def other_thread():
        got.append(tiny.lock.acquire(timeout=5))
        if got[-1]:
            tiny.lock.release()

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert got == [True]
    assert tiny.generate("the cat", 10) == plain  # unsteered: `it` is still alive


def test_activations_between_steered_tokens_are_clean_and_cached_clean(tiny):
    clean = tiny.activations(TEXTS, cache=False).values.clone()
    for _ in tiny.stream("the cat", 3, steer=_steer(tiny)):
        between = tiny.activations(TEXTS)
        assert torch.equal(between.values, clean)
    assert torch.equal(tiny.activations(TEXTS).values, clean)


def test_stream_holds_back_a_character_until_its_last_byte(tiny, monkeypatch):
    from reprlab import steering

    want = "映画は"
    ids = [tiny.tokenizer.convert_tokens_to_ids(t) for t in
           tiny.tokenizer.convert_ids_to_tokens(tiny.tokenizer(want)["input_ids"])]
    script = iter(ids)
    monkeypatch.setattr(steering, "_pick", lambda *a: next(script))
    pieces = [t.text for t in tiny.stream("x", len(ids))]
    assert "".join(pieces) == want and "\ufffd" not in "".join(pieces)
    assert [p for p in pieces if p] == list(want)  # each character once, whole


def test_byte_tokens_read_as_bytes_not_replacement_characters(tiny):
    from reprlab.tokens import readable_token

    ids = tiny.tokenizer("映 a")["input_ids"]
    assert [readable_token(tiny.tokenizer, i) for i in ids] == ["<0xE6>", "<0x98>", "<0xA0>",
                                                                " ", "a"]
    acts = tiny.token_activations("映 a", layers=[1])
    assert acts.tokens[:3] == ("<0xE6>", "<0x98>", "<0xA0>")


# --- labels, groups and word positions ---------------------------------------------------------


def test_missing_string_labels_are_refused_naming_the_rows(tiny):
    import pandas as pd
    import pytest

    from reprlab import probe_curve

    acts = tiny.activations([f"text {i}" for i in range(8)], layers=[1, 2])
    for missing in (float("nan"), pd.NA, None):
        labels = ["pos", "neg"] * 4
        labels[3] = labels[6] = missing
        with pytest.raises(ValueError, match=r"missing \(NaN, None or NA\) at rows 3, 6: drop"):
            probe_curve(acts, labels)
    series = pd.Series(["pos", "neg"] * 4, dtype="string")
    series[5] = pd.NA
    with pytest.raises(ValueError, match="at row 5"):
        probe_curve(acts, series)


def test_infinite_labels_and_missing_groups_are_refused_naming_the_rows(tiny):
    import pytest

    from reprlab import probe_curve

    acts = tiny.activations([f"text {i}" for i in range(8)], layers=[1, 2])
    with pytest.raises(ValueError, match="infinite at row 2: pass finite numbers"):
        probe_curve(acts, [0.5, 1.0, float("inf"), 2.0, 0.1, 0.2, 0.3, 0.4])
    groups = [0, 0, 1, 1, float("nan"), 2, 3, 3]
    with pytest.raises(ValueError, match="groups are missing .* at row 4: give every example"):
        probe_curve(acts, ["a", "b"] * 4, groups=groups, folds=2)


def test_word_positions_match_whole_words_only(tiny):
    import pytest

    acts = tiny.activations(["what a day today", "a cat, in concatenation"], layers=[1],
                            at=["day", "cat"])
    assert acts.positions == (len("what a day") - 1, len("a cat") - 1)  # one token per byte
    with pytest.raises(ValueError, match=r"occurs only inside 'concatenation'.*whole word"):
        tiny.activations(["concatenation"], at="cat")
    with pytest.raises(ValueError, match="not found"):
        tiny.activations(["see you today"], at="day")


def test_a_repeated_word_warns_which_occurrence_is_read(tiny):
    import pytest

    with pytest.warns(UserWarning, match=r"'cat' occurs 2 times in texts\[0\]: reading its last"
                                         r" occurrence; pass a token index"):
        acts = tiny.activations(["the cat saw a cat"], layers=[1], at="cat")
    assert acts.positions == (len("the cat saw a cat") - 1,)


# --- CSV export ----------------------------------------------------------------------------------


def test_csv_export_neutralizes_formula_cells(tiny, tmp_path):
    import csv

    from reprlab.widgets import ProbeCurves

    view = ProbeCurves(tiny, background=False)
    view.rows = lambda: [{"text": "=HYPERLINK(\"http://evil\")", "label": "+1", "who": "@me",
                          "note": "-2+3", "score": -0.5, "plain": "a = b"}]
    path = view.export_csv(tmp_path / "out.csv")
    row = next(csv.DictReader(path.open(encoding="utf-8")))
    assert row == {"text": "'=HYPERLINK(\"http://evil\")", "label": "'+1", "who": "'@me",
                   "note": "'-2+3", "score": "-0.5", "plain": "a = b"}


def test_a_character_cut_off_by_max_new_tokens_is_dropped_not_shown_as_replacement(tiny,
                                                                                     monkeypatch):
    from reprlab import steering

    ids = tiny.tokenizer("a映")["input_ids"]  # "a", then the three bytes of 映
    script = iter(ids)
    monkeypatch.setattr(steering, "_pick", lambda *a: next(script))
    assert tiny.generate("x", 3) == "a"  # stopped after two of the three bytes
