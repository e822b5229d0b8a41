"""Loading never unpickles, never trusts a crafted header or a corrupted cache, never dies on a
full or read-only cache, and the on-disk activation store never maps unreserved space."""

import errno
import json
import os
import time
import warnings

import gguf
import numpy as np
import pytest
import torch

from reprlab import Session, conversion, loading, store
from reprlab.loading import ModelLoadError
from reprlab.tiny import build_tiny


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(loading.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _tiny_folder(folder, seed=0):
    model, tok = build_tiny("llama", seed=seed)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return model, tok


def _no_unpickling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", refuse)


# --- 4: safetensors only ---------------------------------------------------------------------


def test_index_mapping_weights_to_a_pickle_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    model, _ = _tiny_folder(folder)
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 not really a pickle")
    names = [name for name, _ in model.named_parameters()]
    weight_map = {n: "pytorch_model.bin" if i == 0 else "model-00001-of-00001.safetensors"
                  for i, n in enumerate(names)}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    _no_unpickling(monkeypatch)
    with pytest.raises(ModelLoadError, match=r"'pytorch_model.bin', which is not a safetensors"):
        Session.load(str(folder))


def test_index_entry_outside_the_folder_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    _tiny_folder(folder)
    _tiny_folder(tmp_path / "elsewhere", seed=1)
    weight_map = {"model.embed_tokens.weight": "../elsewhere/model.safetensors"}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ModelLoadError, match="outside the model folder"):
        Session.load(str(folder))


def test_folder_with_only_pickled_weights_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    _tiny_folder(folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04")
    _no_unpickling(monkeypatch)
    with pytest.raises(ModelLoadError, match=r"no safetensors weights \(it has pytorch_model"
                                             r".bin\).*convert the model to safetensors"):
        Session.load(str(folder))


# --- 5: GGUF headers checked before a model is built -------------------------------------------


def _write_gguf(path, block_count=2, blocks=2, heads=4, width=8, context=64):
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(block_count)
    w.add_context_length(context)
    w.add_embedding_length(width)
    w.add_feed_forward_length(16)
    w.add_head_count(heads)
    w.add_head_count_kv(heads)
    w.add_tensor("token_embd.weight", np.zeros((32, width), np.float32))
    for b in range(blocks):
        w.add_tensor(f"blk.{b}.attn_norm.weight", np.ones(width, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_crafted_block_count_is_refused_before_building_a_model(tmp_path, monkeypatch):
    path = _write_gguf(tmp_path / "crafted.gguf", block_count=10**9)
    monkeypatch.setattr(loading.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: pytest.fail("a model was built"))
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match=r"block_count is 1000000000 but the file holds "
                                             r"tensors for 2 blocks.*re-download"):
        Session.load(str(path))
    assert time.perf_counter() - start < 10


def test_gguf_with_zero_heads_or_a_truncated_tensor_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="at least one attention head"):
        Session.load(str(_write_gguf(tmp_path / "heads.gguf", heads=0)))
    path = _write_gguf(tmp_path / "cut.gguf")
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ModelLoadError, match="past the end of the file"):
        Session.load(str(path))


def test_wellformed_tiny_gguf_header_passes(tmp_path):
    conversion.check_gguf(_write_gguf(tmp_path / "ok.gguf"))


# --- 6: the conversion cache is keyed by content -----------------------------------------------


def test_same_name_and_size_but_another_middle_gets_another_cache_folder(tmp_path):
    a, b = tmp_path / "a" / "m.gguf", tmp_path / "b" / "m.gguf"
    for path, middle in ((a, b"x"), (b, b"y")):
        path.parent.mkdir()
        path.write_bytes(b"\0" * (3 << 20) + middle + b"\0" * (3 << 20))
    assert a.stat().st_size == b.stat().st_size
    assert conversion.converted_cache_dir(a) != conversion.converted_cache_dir(b)


def test_manifest_naming_another_source_is_not_trusted(tmp_path):
    model, tok = build_tiny("llama", seed=0)
    target = tmp_path / "converted"
    assert conversion.write_cache(model, tok, target, tmp_path / "x.gguf", "a" * 64)
    assert conversion.cache_is_valid(target, "a" * 64)
    assert not conversion.cache_is_valid(target, "b" * 64)


# --- 7: checksums ------------------------------------------------------------------------------


@pytest.fixture
def written(tmp_path):
    model, tok = build_tiny("llama", seed=0)
    target = tmp_path / "converted"
    conversion.write_cache(model, tok, target, tmp_path / "x.gguf", "a" * 64)
    return target


def test_same_size_corruption_of_cached_weights_is_detected(written):
    weights = written / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) * 3 // 5 + 11] ^= 0xFF  # one byte in the middle, away from the samples
    weights.write_bytes(bytes(data))
    assert not conversion.cache_is_valid(written, "a" * 64)


def test_corrupted_header_is_detected_even_with_the_old_mtime(written):
    weights = written / "model.safetensors"
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[20] ^= 0xFF
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert not conversion.cache_is_valid(written, "a" * 64)


def test_manifest_with_no_files_is_not_trusted(written):
    manifest = written / conversion.MANIFEST
    info = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**info, "files": {}}))
    assert not conversion.cache_is_valid(written)


# --- 8: read-only or full cache ----------------------------------------------------------------


def test_cache_that_cannot_be_written_warns_and_leaves_nothing(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    model, tok = build_tiny("llama", seed=0)

    def full_disk(*args, **kwargs):
        raise SafetensorError("No space left on device (os error 28)")

    monkeypatch.setattr(model, "save_pretrained", full_disk)
    target = tmp_path / "converted" / "m"
    with pytest.warns(UserWarning, match="loaded without caching.*free some space"):
        assert not conversion.write_cache(model, tok, target, tmp_path / "x.gguf", "a" * 64)
    assert list((tmp_path / "converted").iterdir()) == []


def test_cache_folder_that_is_a_file_warns_instead_of_failing(tmp_path):
    model, tok = build_tiny("llama", seed=0)
    (tmp_path / "afile").write_text("")
    with pytest.warns(UserWarning, match="could not write the converted model"):
        assert not conversion.write_cache(model, tok, tmp_path / "afile" / "converted" / "m",
                                          tmp_path / "x.gguf", "a" * 64)


def test_stale_tmp_folders_of_dead_conversions_are_swept(tmp_path):
    folder = tmp_path / "converted"
    dead = folder / ".tmp-m-2147480000-abc"  # no such process
    alive = folder / f".tmp-m-{os.getpid()}-xyz"
    dead.mkdir(parents=True)
    alive.mkdir()
    model, tok = build_tiny("llama", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conversion.write_cache(model, tok, folder / "m", tmp_path / "x.gguf", "a" * 64)
    assert not dead.exists() and alive.exists()


# --- 2: the on-disk activation store -----------------------------------------------------------


def test_full_disk_is_a_clear_oserror_before_mapping_and_leaves_no_file(tmp_path, monkeypatch):
    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    mapped = []
    monkeypatch.setattr(torch, "from_file", lambda *a, **k: mapped.append(1))
    with pytest.raises(OSError, match="could not reserve .* free some space") as info:
        store.disk_tensor((2, 3, 4), torch.float16, tmp_path)
    assert info.value.errno == errno.ENOSPC and not mapped
    assert list(tmp_path.iterdir()) == []


def test_disk_store_space_is_allocated_not_sparse(tmp_path):
    values = store.disk_tensor((4, 256, 512), torch.float16, tmp_path)
    assert values.shape == (4, 256, 512) and torch.count_nonzero(values) == 0


# --- 16.9: a nonsense model name fails fast offline ----------------------------------------------


def test_unknown_model_name_offline_fails_fast_and_says_what_it_is_not(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="neither a local folder, a .gguf file nor a model "
                                             "in the Hugging Face cache.*downloads are off"):
        Session.load("no-such-model-xyz")
    assert time.perf_counter() - start < 5


def test_unknown_model_name_without_network_blames_the_name_first(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(loading, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ModelLoadError, match="neither a local folder.*cannot be reached"):
        Session.load("no-such-model-xyz")
