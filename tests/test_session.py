"""Session on tiny random models of every supported family: discovery, extraction, hooks."""

import numpy as np
import pytest
import torch
from conftest import assert_close_relative, expected_at, reference_hidden_states

from reprlab import Session
from reprlab.tiny import BLOCKS, TINY_CONFIGS, WIDTH

FAMILIES = sorted(TINY_CONFIGS)
TEXTS = ["hello world", "a much longer text with several words", "xyz", "the day is Monday"]


@pytest.mark.parametrize("arch", FAMILIES)
def test_layer_discovery_finds_blocks_norm_and_unembedding(arch):
    s = Session.tiny(arch=arch)
    assert s.n_blocks == BLOCKS
    assert s.layers == list(range(BLOCKS + 1))
    assert s.parts.final_norm is not None
    assert tuple(s.parts.unembedding.shape) == (len(s.tokenizer), WIDTH)
    assert s.parts.blocks[0] in list(s.model.modules())


@pytest.mark.parametrize("arch", FAMILIES)
@pytest.mark.parametrize("at", ["last", "mean", 2, -3, "world"])
def test_batched_extraction_matches_output_hidden_states(arch, at):
    s = Session.tiny(arch=arch)
    texts = [t for t in TEXTS if not isinstance(at, str) or at in ("last", "mean") or at in t]
    texts = texts or ["hello world"]
    acts = s.activations(texts, at=at, batch_size=3)
    assert acts.values.shape == (BLOCKS + 1, len(texts), WIDTH)
    for i, text in enumerate(texts):
        expected = expected_at(reference_hidden_states(s, text), at, acts.positions[i])
        assert_close_relative(acts.values[:, i], expected)


def test_word_position_reads_last_token_of_last_occurrence(tiny):
    acts = tiny.activations(["one two one", "xx one"], at="one", layers=[1])
    # byte tokenizer: one token per character
    assert acts.positions == (10, 5)
    assert acts.tokens == ("e", "e")


def test_batched_equals_unbatched(tiny):
    a = tiny.activations(TEXTS, batch_size=len(TEXTS), cache=False)
    b = tiny.activations(TEXTS, batch_size=1, cache=False)
    assert_close_relative(a.values, b.values)


def test_forward_stops_after_deepest_layer_and_skips_lm_head(tiny):
    calls = {"last_block": 0, "head": 0}
    h1 = tiny.parts.blocks[-1].register_forward_hook(lambda *a: calls.__setitem__("last_block", 1))
    h2 = tiny.parts.lm_head.register_forward_hook(lambda *a: calls.__setitem__("head", 1))
    try:
        tiny.activations(TEXTS, layers=[1, 2])
        assert calls == {"last_block": 0, "head": 0}
        tiny.activations(TEXTS, layers=[BLOCKS])
        assert calls == {"last_block": 1, "head": 0}
    finally:
        h1.remove()
        h2.remove()


def test_repeated_call_comes_from_cache_and_subsets_layers(tiny):
    first = tiny.activations(TEXTS)
    calls = tiny.model_calls
    again = tiny.activations(TEXTS)
    subset = tiny.activations(TEXTS, layers=[1, 3])
    assert tiny.model_calls == calls
    assert torch.equal(again.values, first.values)
    assert again.values.data_ptr() != first.values.data_ptr()  # the caller's own copy
    assert torch.equal(subset.values, first.values[[1, 3]])
    tiny.activations(TEXTS, at="mean")
    assert tiny.model_calls == calls + 1


def test_cache_is_keyed_by_model_fingerprint():
    a, b = Session.tiny(seed=0), Session.tiny(seed=1)
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == Session.tiny(seed=0).fingerprint


def test_progress_callback_receives_batch_counts(tiny):
    seen = []
    tiny.activations(TEXTS, batch_size=1, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, len(TEXTS)) for i in range(1, len(TEXTS) + 1)]


def test_negative_layers_count_from_the_end(tiny):
    acts = tiny.activations(TEXTS, layers=[-1, 0])
    assert acts.layers == (0, BLOCKS)


def test_info_and_repr_describe_the_model(tiny):
    info = tiny.info
    assert (info.blocks, info.width, info.hidden_states, info.device) == (BLOCKS, WIDTH, 5, "cpu")
    assert info.params == sum(p.numel() for p in tiny.model.parameters())
    assert "tiny-llama" in repr(tiny) and "hidden states 0..4" in repr(tiny)


def test_edit_hook_changes_downstream_state_and_is_removed(tiny):
    base = tiny.activations(TEXTS, layers=[2, 3], cache=False).values
    with tiny.hooks(edits={2: lambda h: h * 0}):
        assert tiny.backend.hook_count() == 1
        edited = tiny.activations(TEXTS, layers=[2, 3], cache=False).values
    assert tiny.backend.hook_count() == 0
    assert edited[0].abs().max() == 0          # the read at layer 2 sees the edit
    assert not torch.allclose(edited[1], base[1])
    after = tiny.activations(TEXTS, layers=[2, 3], cache=False).values
    assert torch.equal(after, base)


def test_edit_at_layer_zero_changes_embeddings(tiny):
    with tiny.hooks(edits={0: lambda h: h + 1.0}):
        edited = tiny.activations(["abc"], layers=[0], cache=False).values
    base = tiny.activations(["abc"], layers=[0], cache=False).values
    assert torch.allclose(edited, base + 1.0)


def test_read_hook_matches_output_hidden_states(tiny):
    seen = {}
    with tiny.hooks(reads={BLOCKS: lambda h: seen.setdefault("h", h.clone())}):
        tiny.generate("abc", max_new_tokens=1)
    ref = reference_hidden_states(tiny, "abc")
    assert_close_relative(seen["h"][0], ref[BLOCKS])


def test_hooks_are_removed_when_the_body_raises(tiny):
    def boom(h):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with tiny.hooks(edits={1: boom}):
            tiny.generate("abc", max_new_tokens=3)
    assert tiny.backend.hook_count() == 0
    tiny.activations(["abc"])  # still usable


def test_generate_is_greedy_by_default_and_seeded_when_sampling(tiny):
    assert tiny.generate("abc", max_new_tokens=8) == tiny.generate("abc", max_new_tokens=8)
    a = tiny.generate("abc", max_new_tokens=12, temperature=1.0, seed=1)
    b = tiny.generate("abc", max_new_tokens=12, temperature=1.0, seed=1)
    c = tiny.generate("abc", max_new_tokens=12, temperature=1.0, seed=2)
    assert a == b and a != c


def test_generate_leaves_global_rng_untouched(tiny):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny.generate("abc", max_new_tokens=4, temperature=1.0, seed=9)
    assert torch.equal(torch.rand(3), expected)



def test_per_text_positions_read_each_text_where_asked(tiny):
    texts = ["hello world", "abc def", "xyzw"]
    acts = tiny.activations(texts, at=["world", "mean", 1])
    assert acts.positions == (10, -1, 1)
    positions = ["world", "mean", 1]
    together = [
        tiny.activations([t], at=a).values[:, 0] for t, a in zip(texts, positions, strict=True)
    ]
    assert_close_relative(acts.values, torch.stack(together, dim=1))


def test_per_text_positions_must_match_text_count(tiny):
    with pytest.raises(ValueError, match="at has 2 positions but there are 3 texts"):
        tiny.activations(["a", "b", "c"], at=["a", "b"])


def test_float16_storage_halves_memory_and_stays_close(tiny):
    full = tiny.activations(TEXTS)
    half = tiny.activations(TEXTS, dtype=torch.float16)
    assert half.values.dtype == torch.float16 and half is not full
    assert half.values.element_size() * 2 == full.values.element_size()
    assert_close_relative(half.values.float(), full.values, rtol=2e-3)
    hits = tiny.cache_hits
    assert torch.equal(tiny.activations(TEXTS, dtype=torch.float16).values, half.values)
    assert tiny.cache_hits == hits + 1  # cached per dtype
    with pytest.raises(ValueError, match="dtype must be"):
        tiny.activations(TEXTS, dtype=torch.int8)


def test_probe_curve_accepts_float16_activations(tiny):
    from reprlab import probe_curve

    texts = [f"{w} number {i}" for i in range(12) for w in ("apple", "stone")]
    labels = [t.split()[0] for t in texts]
    full = probe_curve(tiny.activations(texts, at="mean"), labels, folds=3)
    half = probe_curve(tiny.activations(texts, at="mean", dtype=torch.float16), labels, folds=3)
    assert np.allclose(full.scores, half.scores, atol=0.05)
