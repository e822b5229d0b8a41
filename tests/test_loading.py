"""Loading from folders, and the atomic safetensors conversion cache."""

import json

import pytest
import torch

from reprlab import Session, conversion, loading
from reprlab.tiny import build_tiny


def _logits(session, text="hello there"):
    enc = session.tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        return session.model(**enc).logits


def test_local_folder_loads_with_identical_logits(tmp_path):
    model, tok = build_tiny("llama", seed=4)
    model.save_pretrained(tmp_path, safe_serialization=True)
    tok.save_pretrained(tmp_path)
    original = Session(model, tok, name="orig", device="cpu")
    loaded = Session.load(str(tmp_path), device="cpu")
    assert loaded.name == tmp_path.name
    assert torch.equal(_logits(original), _logits(loaded))


def test_cache_write_is_complete_and_reloads_identically(tmp_path):
    model, tok = build_tiny("gpt2", seed=1)
    target = tmp_path / "converted" / "tiny"
    conversion.write_cache(model, tok, target, tmp_path / "x.gguf", "0" * 64)
    assert conversion.cache_is_valid(target)
    manifest = json.loads((target / "reprlab-cache.json").read_text())
    assert "model.safetensors" in manifest["files"]
    reloaded = Session.load(str(target), device="cpu")
    assert torch.equal(_logits(Session(model, tok, device="cpu")), _logits(reloaded))
    assert not list(target.parent.glob(".tmp-*"))


def test_killed_conversion_leaves_no_trusted_cache(tmp_path, monkeypatch):
    model, tok = build_tiny("llama", seed=0)
    target = tmp_path / "converted" / "tiny"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as if the user interrupted the kernel mid-write

    monkeypatch.setattr(tok, "save_pretrained", killed)
    with pytest.raises(KeyboardInterrupt):
        conversion.write_cache(model, tok, target, tmp_path / "x.gguf", "0" * 64)
    assert not target.exists()
    assert not conversion.cache_is_valid(target)
    assert not list(target.parent.glob(".tmp-*"))


def test_truncated_cache_file_is_not_trusted(tmp_path):
    model, tok = build_tiny("llama", seed=0)
    target = tmp_path / "tiny"
    conversion.write_cache(model, tok, target, tmp_path / "x.gguf", "0" * 64)
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert not conversion.cache_is_valid(target)


def test_cache_root_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(loading.CACHE_ENV, str(tmp_path))
    assert loading.cache_root() == tmp_path
