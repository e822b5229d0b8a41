"""Issue 15/16 reproductions on the embedded SmolLM2: crafted GGUF headers, caches that cannot
be written or were corrupted, and multi-byte characters in generation."""

import shutil
import struct
import time

import pytest
import torch

from reprlab import Session, conversion, loading
from reprlab.loading import ModelLoadError
from reprlab.tokens import readable_token

pytestmark = pytest.mark.integration


def _patched_gguf(tmp_path, key: bytes, value: int):
    source = loading.embedded_gguf_path()
    data = bytearray(source.read_bytes())
    at = data.index(key) + len(key)
    assert struct.unpack_from("<I", data, at)[0] == 4  # a uint32 field
    struct.pack_into("<I", data, at + 4, value)
    path = tmp_path / source.name
    path.write_bytes(bytes(data))
    return path


def test_embedded_block_count_patched_to_a_billion_is_refused_fast(tmp_path, monkeypatch):
    monkeypatch.setenv(loading.CACHE_ENV, str(tmp_path / "cache"))
    path = _patched_gguf(tmp_path, b"llama.block_count", 10**9)
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="block_count is 1000000000 but the file holds "
                                             "tensors for 30 blocks"):
        Session.load(str(path))
    assert time.perf_counter() - start < 30


def test_embedded_gguf_with_zero_heads_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(loading.CACHE_ENV, str(tmp_path / "cache"))
    path = _patched_gguf(tmp_path, b"llama.attention.head_count", 0)
    with pytest.raises(ModelLoadError, match="at least one attention head"):
        Session.load(str(path))


def test_unwritable_cache_falls_back_to_loading_without_caching(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv(loading.CACHE_ENV, str(tmp_path / "afile" / "cache"))
    with pytest.warns(UserWarning, match="loaded without caching"):
        model, tok, _ = loading.load_model(None)
    enc = tok("The capital of France is", return_tensors="pt")
    with torch.inference_mode():
        assert torch.isfinite(model(**enc).logits).all()


def test_same_size_corruption_and_empty_manifest_trigger_reconversion(tmp_path, monkeypatch):
    monkeypatch.setenv(loading.CACHE_ENV, str(tmp_path))
    model, tok, _ = loading.load_model(None)
    enc = tok("The capital of France is", return_tensors="pt")
    with torch.inference_mode():
        expected = model(**enc).logits
    folder = conversion.converted_cache_dir(loading.embedded_gguf_path())
    weights = folder / "model.safetensors"
    with open(weights, "r+b") as f:  # same size, different weights in the middle
        f.seek(weights.stat().st_size // 2)
        f.write(b"\x7f" * 4096)
    assert not conversion.cache_is_valid(folder)
    model, _, _ = loading.load_model(None)
    with torch.inference_mode():
        assert torch.equal(model(**enc).logits, expected)
    manifest = folder / conversion.MANIFEST
    manifest.write_text(manifest.read_text().split('"files"')[0] + '"files": {}}')
    model, _, _ = loading.load_model(None)
    assert conversion.cache_is_valid(folder)
    shutil.rmtree(folder)


def test_japanese_generation_has_no_replacement_characters(smol):
    text = smol.generate("映画は", 8)
    pieces = [t.text for t in smol.stream("映画は", 8)]
    assert "\ufffd" not in text and "".join(pieces) == text and text.strip()


def test_byte_pieces_of_smollm2_read_as_bytes(smol):
    ids = smol.tokenizer("映画は", add_special_tokens=False)["input_ids"]
    shown = [readable_token(smol.tokenizer, i) for i in ids]
    assert "".join(shown).replace("<0x", "").strip() and "\ufffd" not in "".join(shown)
