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
