"""Integration: the embedded SmolLM2-135M-Instruct, against plain transformers."""

import pytest
import torch
from conftest import assert_close_relative, expected_at, reference_hidden_states

from reprlab import conversion, datasets, loading

pytestmark = pytest.mark.integration

TEXTS = [
    "I loved this movie so much.",
    "See you next Friday, said Tom.",
    "Hi there",
    "The capital of France is Paris, and the capital of Italy is Rome.",
    "We met on Friday.",
]


def test_embedded_session_describes_itself(smol):
    info = smol.info
    assert (info.blocks, info.width, info.vocab) == (30, 576, 49152)
    assert "SmolLM2-135M-Instruct" in info.name and "GGUF" in info.name


@pytest.mark.parametrize("at", ["last", "mean", 1, -2, "Friday"])
def test_all_31_hidden_states_match_transformers_batched_and_unbatched(smol, at):
    texts = [t for t in TEXTS if at != "Friday" or "Friday" in t]
    batched = smol.activations(texts, at=at, batch_size=len(texts), cache=False)
    single = smol.activations(texts, at=at, batch_size=1, cache=False)
    assert batched.values.shape == (31, len(texts), 576)
    assert_close_relative(batched.values, single.values)
    for i, text in enumerate(texts):
        if at == "Friday":
            assert batched.tokens[i] == " Friday"
        expected = expected_at(reference_hidden_states(smol, text), at, batched.positions[i])
        assert_close_relative(batched.values[:, i], expected)


def test_cached_conversion_gives_identical_logits_to_gguf(smol):
    direct, tok, _ = loading.load_model(None, use_cache=False)
    enc = tok("The capital of France is", return_tensors="pt")
    with torch.inference_mode():
        expected = direct(**enc).logits
        actual = smol.model(**enc.to(smol.device)).logits
    assert torch.equal(actual.cpu(), expected)
    assert conversion.cache_is_valid(conversion.converted_cache_dir(loading.embedded_gguf_path()))


def test_greedy_generation_is_sensible_and_repeatable(smol):
    text = smol.generate("The capital of France is", max_new_tokens=6)
    assert "Paris" in text
    assert smol.generate("The capital of France is", max_new_tokens=6) == text


@pytest.mark.parametrize("name", ["days", "months"])
def test_builtin_cycle_items_are_read_at_their_own_token(smol, name):
    texts, items = zip(*datasets.load(name).examples(), strict=True)
    acts = smol.activations(list(texts), layers=[6], at=list(items))
    for item, token in zip(items, acts.tokens, strict=True):
        assert token.strip() and token.strip() in item


def test_corrupted_cache_is_detected_and_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv(loading.CACHE_ENV, str(tmp_path))
    loading.load_model(None)
    folder = conversion.converted_cache_dir(loading.embedded_gguf_path())
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: 1 << 20])  # a truncated file, as after a crash
    assert not conversion.cache_is_valid(folder)
    model, tok, _ = loading.load_model(None)
    assert conversion.cache_is_valid(folder)
    enc = tok("Hello", return_tensors="pt")
    with torch.inference_mode():
        assert torch.isfinite(model(**enc).logits).all()
