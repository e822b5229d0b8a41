"""Issue 22 (reliability, round two), items 3-6 and 8-10: GGUF metadata bombs, stale
conversions at the same path, bit rot in the cache, caches that repair themselves, multibyte
words, a context length the position embedding cannot support, and raw exceptions.

Every model here is a tiny GGUF written by the test (two blocks, width 16), so a conversion
takes about a second; the one embedded-model test is marked ``integration``."""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import time
import warnings

import gguf
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import pre_tokenizers

from reprlab import Direction, Session, conversion, loading, store
from reprlab.activations import encode
from reprlab.loading import ModelLoadError
from reprlab.tiny import build_tiny

ROPE_BASE = 10_000.0
WIDTH, HEADS = 16, 2


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Every test gets its own conversion cache: the real one is never touched."""
    monkeypatch.setenv(loading.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def write_tiny_gguf(path, *, seed: int = 0, context: int = 64, extra_tokens: int = 0,
                    blocks: int = 2, ff: int = 32, extra_merges: int = 0):
    """A tiny float32 Llama GGUF that transformers can load (byte-level BPE tokenizer;
    ``extra_merges`` adds dummy merges only the header check reads)."""
    rng = np.random.default_rng(seed)
    tokens = sorted(pre_tokenizers.ByteLevel.alphabet()) + ["Ġt"]
    tokens += [f"w{i:05d}" for i in range(extra_tokens)] + ["<|endoftext|>"]
    vocab = len(tokens)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(blocks)
    w.add_context_length(context)
    w.add_embedding_length(WIDTH)
    w.add_feed_forward_length(ff)
    w.add_head_count(HEADS)
    w.add_head_count_kv(HEADS)
    w.add_rope_freq_base(ROPE_BASE)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_rope_dimension_count(WIDTH // HEADS)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([1] * vocab)
    w.add_token_merges(["Ġ t"] + [f"w{i} x" for i in range(extra_merges)])
    w.add_eos_token_id(vocab - 1)
    w.add_bos_token_id(vocab - 1)

    def weight(*shape):
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    w.add_tensor("token_embd.weight", weight(vocab, WIDTH))
    w.add_tensor("output_norm.weight", np.ones(WIDTH, np.float32))
    w.add_tensor("output.weight", weight(vocab, WIDTH))
    for b in range(blocks):
        w.add_tensor(f"blk.{b}.attn_norm.weight", np.ones(WIDTH, np.float32))
        w.add_tensor(f"blk.{b}.ffn_norm.weight", np.ones(WIDTH, np.float32))
        for name in ("q", "k", "v", "output"):
            w.add_tensor(f"blk.{b}.attn_{name}.weight", weight(WIDTH, WIDTH))
        w.add_tensor(f"blk.{b}.ffn_gate.weight", weight(ff, WIDTH))
        w.add_tensor(f"blk.{b}.ffn_up.weight", weight(ff, WIDTH))
        w.add_tensor(f"blk.{b}.ffn_down.weight", weight(WIDTH, ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def load_quietly(spec, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return loading.load_model(str(spec), **kwargs)


def embedding(model) -> torch.Tensor:
    return model.get_input_embeddings().weight.detach().clone()


def count_conversions(monkeypatch) -> list[int]:
    """Count GGUF conversions (each one checks the header first)."""
    calls: list[int] = []
    real = loading.check_gguf

    def counting(path):
        calls.append(1)
        return real(path)

    monkeypatch.setattr(loading, "check_gguf", counting)
    return calls


def unsampled_offset(path, fraction: float = 0.6, align: int = 4) -> int:
    """A byte offset of ``path`` that ``sampled_sha256`` never reads (and, for a safetensors
    file, on a float32 boundary of its data)."""
    size = path.stat().st_size
    base = 0
    if path.suffix == ".safetensors":
        base = 8 + struct.unpack("<Q", path.read_bytes()[:8])[0]
    i = int(fraction * 64)
    at = size * i // 64 + 4096 + (size // 64 - 4096) // 2
    at = base + (at - base) // align * align
    windows = [(0, 1 << 16)] + [(size * k // 64, size * k // 64 + 4096) for k in range(64)]
    assert size // 64 > 4096 + 64, "the file is too small to have unsampled bytes"
    assert not any(a <= at < b or a <= at + 8 < b for a, b in windows)
    return at


def overwrite_keeping_mtime(path, offset: int, data: bytes) -> None:
    stat = path.stat()
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


# --- 3: GGUF metadata bomb ---------------------------------------------------------------------


def insert_metadata(path, key: str, kind: int, payload: bytes) -> None:
    """Insert one metadata entry right after the GGUF header (length kept a multiple of the
    32-byte alignment, so the tensor data stays where its offsets say)."""
    data = bytearray(path.read_bytes())
    key += "_" * (-(8 + len(key) + 4 + len(payload)) % 32)
    entry = struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", kind) + payload
    n_fields = struct.unpack_from("<Q", data, 16)[0]
    struct.pack_into("<Q", data, 16, n_fields + 1)
    path.write_bytes(bytes(data[:24]) + entry + bytes(data[24:]))


@pytest.mark.parametrize("inner, n, item", [(8, 2_000_000, 8), (0, 4_000_000, 1)])
def test_metadata_array_bomb_is_refused_in_seconds_before_any_model_is_built(
        tmp_path, monkeypatch, inner, n, item):
    # 2M empty strings (16 MB) or 4M uint8 (4 MB): transformers' gguf reader takes ~12 us per
    # item (4M uint8: 49 s measured; the 4M strings: 981 s and 7.4 GB)
    path = write_tiny_gguf(tmp_path / "bomb.gguf")
    insert_metadata(path, "bomb.arr", 9, struct.pack("<IQ", inner, n) + bytes(item * n))
    for name in ("AutoModelForCausalLM", "AutoTokenizer"):
        monkeypatch.setattr(getattr(loading, name), "from_pretrained",
                            lambda *a, **k: pytest.fail("the bomb reached transformers"))
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match=rf"bomb\.arr.* {n} items"):
        loading.load_model(str(path))
    assert time.perf_counter() - start < 5


def test_metadata_string_bomb_is_refused(tmp_path):
    path = write_tiny_gguf(tmp_path / "bomb.gguf")
    n = (17 << 20) + 16  # one 17 MiB string value
    insert_metadata(path, "bomb.s", 8, struct.pack("<Q", n) + b"x" * n)
    with pytest.raises(conversion.GGUFHeaderError, match=r"bomb\.s.*MiB"):
        conversion.check_gguf(path)


def test_tokenizer_arrays_longer_than_the_vocabulary_are_refused(tmp_path):
    path = write_tiny_gguf(tmp_path / "bomb.gguf")
    n = 40_000  # far more merges than the 258-token embedding could ever use
    insert_metadata(path, "tokenizer.ggml.mergez", 9, struct.pack("<IQ", 8, n) + bytes(8 * n))
    with pytest.raises(conversion.GGUFHeaderError, match="40000 items"):
        conversion.check_gguf(path)


def test_merges_may_outnumber_tokens_as_in_llama_3_but_not_without_bound(tmp_path):
    # Llama 3: 280,147 merges for 128,256 tokens (2.2x); the tiny vocabulary has 259 tokens
    conversion.check_gguf(write_tiny_gguf(tmp_path / "l3.gguf", extra_merges=570))
    with pytest.raises(conversion.GGUFHeaderError, match="tokenizer.ggml.merges"):
        conversion.check_gguf(write_tiny_gguf(tmp_path / "no.gguf", extra_merges=4 * 259 + 300))


def test_embedded_sized_header_still_passes(tmp_path):
    conversion.check_gguf(write_tiny_gguf(tmp_path / "ok.gguf", extra_tokens=30_000))


# --- 4: stale conversion at the same path ------------------------------------------------------


def test_same_size_copy_with_kept_mtime_gets_a_new_content_hash(tmp_path):
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(b"\0" * (1 << 20) + b"x" + b"\0" * (1 << 20))
    b.write_bytes(b"\0" * (1 << 20) + b"y" + b"\0" * (1 << 20))
    first = conversion.content_hash(a)
    stat = a.stat()
    shutil.copyfile(b, a)  # same path, same size, mtime put back: only the ctime tells
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert conversion.content_hash(a) == conversion.file_sha256(b) != first


def test_same_size_gguf_copied_over_with_kept_mtime_loads_the_new_weights(tmp_path):
    target, other = tmp_path / "m.gguf", tmp_path / "other" / "m.gguf"
    other.parent.mkdir()
    write_tiny_gguf(target, seed=0)
    write_tiny_gguf(other, seed=1)
    assert target.stat().st_size == other.stat().st_size
    old = embedding(load_quietly(target)[0])
    stat = target.stat()
    shutil.copyfile(other, target)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    new = embedding(load_quietly(target)[0])
    assert not torch.equal(new, old)
    assert torch.equal(new, embedding(load_quietly(other, use_cache=False)[0]))


# --- 5: bit rot in the cached safetensors ------------------------------------------------------


@pytest.fixture
def cached(tmp_path):
    """A converted tiny GGUF: (gguf path, cache folder, clean embedding)."""
    path = write_tiny_gguf(tmp_path / "m.gguf", extra_tokens=30_000)
    model, _, _ = load_quietly(path)
    folder = conversion.converted_cache_dir(path)
    assert conversion.cache_is_valid(folder)
    return path, folder, embedding(model)


def test_full_verify_finds_a_finite_flip_outside_the_samples_and_repairs_it(cached):
    path, folder, clean = cached
    weights = folder / "model.safetensors"
    overwrite_keeping_mtime(weights, unsampled_offset(weights), struct.pack("<f", 0.123))
    assert conversion.cache_is_valid(folder)  # the sampled default cannot see it
    assert not conversion.cache_is_valid(folder, full=True)
    with pytest.warns(UserWarning, match="does not match its manifest"):
        model, _, _ = loading.load_model(str(path), verify="full")
    assert torch.equal(embedding(model), clean)
    assert conversion.cache_is_valid(folder, full=True)  # rewritten, not just bypassed


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e30])
def test_a_rotten_weight_in_the_cache_is_caught_by_the_default_load(cached, value):
    path, folder, clean = cached
    weights = folder / "model.safetensors"
    overwrite_keeping_mtime(weights, unsampled_offset(weights), struct.pack("<f", value))
    with pytest.warns(UserWarning, match="converting the GGUF file again"):
        model, _, _ = loading.load_model(str(path))
    assert torch.equal(embedding(model), clean)
    assert conversion.cache_is_valid(folder, full=True)


def test_a_non_finite_weight_in_a_model_folder_is_refused_naming_the_tensor(tmp_path):
    model, tok = build_tiny("llama", seed=0)
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[3, 5] = float("nan")
    model.save_pretrained(tmp_path / "m", safe_serialization=True)
    tok.save_pretrained(tmp_path / "m")
    with pytest.raises(ModelLoadError, match=r"layers\.1\.mlp\.up_proj\.weight.*NaN"):
        loading.load_model(str(tmp_path / "m"))


def test_session_load_passes_verify_on(cached):
    path, folder, clean = cached
    weights = folder / "model.safetensors"
    overwrite_keeping_mtime(weights, unsampled_offset(weights), struct.pack("<f", 0.123))
    with pytest.warns(UserWarning, match="does not match its manifest"):
        s = Session.load(str(path), verify="full")
    assert torch.equal(embedding(s.model), clean)


def test_verify_must_be_sampled_or_full(tmp_path):
    with pytest.raises(ValueError, match="verify must be 'sampled' or 'full'"):
        loading.load_model(str(tmp_path / "x.gguf"), verify="yes")


def test_verify_cache_command_reports_and_repairs_rot(cached, capsys):
    from reprlab.__main__ import main as cli

    _, folder, _ = cached
    assert cli(["verify-cache"]) == 0
    assert "ok" in capsys.readouterr().out
    weights = folder / "model.safetensors"
    overwrite_keeping_mtime(weights, unsampled_offset(weights), struct.pack("<f", 0.5))
    assert cli(["verify-cache"]) == 1
    out = capsys.readouterr().out
    assert "model.safetensors" in out and "--repair" in out
    assert folder.exists()  # reporting never deletes
    assert cli(["verify-cache", "--repair"]) == 1
    assert not folder.exists()  # removed: the next load converts again
    assert cli(["verify-cache"]) == 0


# --- 6: a bad cache repairs itself -------------------------------------------------------------


def test_a_corrupted_cached_tokenizer_is_rewritten_not_reconverted_every_load(cached,
                                                                              monkeypatch):
    path, folder, clean = cached
    tokenizer = folder / "tokenizer.json"
    good = tokenizer.read_bytes()
    overwrite_keeping_mtime(tokenizer, unsampled_offset(tokenizer, align=1), b"\0\0\0\0")
    assert conversion.cache_is_valid(folder)  # outside the samples, mtime kept
    conversions = count_conversions(monkeypatch)
    with pytest.warns(UserWarning, match="converting the GGUF file again"):
        loading.load_model(str(path))
    assert conversions == [1]
    assert tokenizer.read_bytes() == good  # the bad folder was replaced
    model, tok, _ = loading.load_model(str(path))  # and is used from now on, silently
    assert conversions == [1]
    assert torch.equal(embedding(model), clean)
    assert tok("I love cats")["input_ids"]


# --- 8: multibyte words ------------------------------------------------------------------------


@pytest.mark.parametrize("text, word", [("I love 🐱", "🐱"), ("I love 猫", "猫"),
                                        ("I love שלום", "שלום"), ("我爱猫和狗", "猫"),
                                        ("猫が好き", "猫"), ("Ich mag Käse", "Käse")])
def test_a_multibyte_word_reads_its_last_token(tiny, text, word):
    enc = tiny.tokenizer(text, return_offsets_mapping=True)
    end = text.index(word) + len(word)
    expected = max(i for i, (a, b) in enumerate(enc["offset_mapping"]) if a < end <= b)
    assert encode(tiny.tokenizer, text, word).read_at == expected
    acts = tiny.activations([text], at=word, layers=[1])
    assert acts.positions == (expected,)


def test_a_word_glued_to_latin_letters_is_still_not_matched_inside_them(tiny):
    with pytest.raises(ValueError, match="occurs only inside 'today'"):
        encode(tiny.tokenizer, "see you today", "day")
    assert encode(tiny.tokenizer, "猫cat猫", "cat").read_at == len("猫cat".encode()) - 1


@pytest.mark.integration
def test_embedded_model_reads_the_cat_emoji_at_its_last_token(smol):
    s = smol
    assert s.activations(["I love 🐱"], at="🐱", layers=[1]).positions == (4,)
    enc = s.tokenizer("我爱猫和狗")
    acts = s.activations(["我爱猫和狗"], at="猫", layers=[1])
    assert acts.positions == (7,) and len(enc["input_ids"]) == 12


# --- 9: a context length the position embedding cannot support ---------------------------------


def test_a_crafted_context_length_is_capped_by_the_rotary_embedding_and_says_so(tmp_path):
    path = write_tiny_gguf(tmp_path / "long.gguf", context=16_777_216)
    head_dim = WIDTH // HEADS
    cap = round(2 * math.pi * ROPE_BASE ** ((head_dim - 2) / head_dim))  # 6283
    for _ in range(2):  # converting, then from the cache: said both times
        with pytest.warns(UserWarning, match=r"context_length.*16777216.*capped at 6283"):
            model, _, _ = loading.load_model(str(path))
        assert model.config.max_position_embeddings == cap


def test_a_plausible_context_length_is_kept(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model, _, _ = loading.load_model(str(write_tiny_gguf(tmp_path / "ok.gguf")))
    assert model.config.max_position_embeddings == 64


# --- 10: raw exceptions ------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["0.5", 0.5, "0.9B", "0"])
def test_a_budget_under_one_byte_is_refused_not_made_zero(size):
    with pytest.raises(ValueError, match="at least 1 byte|positive"):
        store.parse_bytes(size)


def test_budget_fractions_round_to_whole_bytes():
    assert store.parse_bytes("1.5") == 1 and store.parse_bytes("1.5KB") == 1500


@pytest.mark.parametrize("content", ["text,label\nI like it,1,extra\nno,0\n",
                                     "text,label\nno,0\nI like it,1,extra\n"])
def test_a_csv_row_with_an_extra_field_is_a_clear_error(content):
    from reprlab.widgets.probe_curves import read_labelled_csv

    with pytest.raises(ValueError, match="row .* 3 fields"):
        read_labelled_csv(content)


def _direction_file(tmp_path, change):
    d = Direction("x", torch.ones(64), 1, "mean_difference")  # the tiny session's width
    path = d.save(tmp_path / "d.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta, vector = json.loads(f.metadata()["reprlab"]), f.get_tensor("0")
    change(meta)
    save_file({"0": vector}, str(path), metadata={"reprlab": json.dumps(meta)})
    return path


def test_direction_metadata_with_a_text_layer_is_a_clear_error(tmp_path):
    path = _direction_file(tmp_path, lambda m: m["directions"][0].update(layer="abc"))
    with pytest.raises(ValueError, match="layer"):
        Direction.load(path, Session.tiny())


def test_direction_metadata_without_a_method_is_a_clear_error(tmp_path):
    path = _direction_file(tmp_path, lambda m: m["directions"][0].pop("method"))
    with pytest.raises(ValueError, match="method"):
        Direction.load(path)


def test_direction_metadata_with_directions_as_a_dict_is_a_clear_error(tmp_path):
    path = _direction_file(tmp_path,
                           lambda m: m.update(directions={"0": m["directions"][0]}))
    with pytest.raises(ValueError, match="directions"):
        Session.tiny().directions.load(path)


@pytest.mark.parametrize("name", [None, "", "   ", 3])
def test_a_direction_needs_a_non_empty_string_name(name):
    with pytest.raises((ValueError, TypeError), match="name"):
        Direction(name, torch.ones(4), 1, "mean_difference")


@pytest.mark.parametrize("name", [None, "", "  "])
def test_views_refuse_a_direction_without_a_name(tiny, name):
    from reprlab.widgets.projection import ConceptProjection

    with pytest.raises(ValueError, match="non-empty name"):  # refused before the view sees it
        ConceptProjection(tiny, Direction("x", torch.ones(tiny.width), 1, "mean_difference")
                          .renamed(name), background=False)
    assert name not in tiny.directions


@pytest.mark.parametrize("name", ["", "   ", 5])
def test_the_direction_manager_refuses_empty_or_non_text_names(tiny, name):
    from reprlab.widgets.registry import DirectionManager

    tiny.directions.add(Direction("x", torch.ones(tiny.width), 1, "mean_difference"))
    manager = DirectionManager(tiny)
    assert manager.rename("x", name) is None
    assert "Not renamed" in manager.status.value and tiny.directions.names() == ["x"]


@pytest.mark.integration
def test_embedded_gguf_with_a_4m_item_empty_string_array_is_refused_in_seconds(tmp_path,
                                                                              monkeypatch):
    """The issue's reproduction: the embedded GGUF plus 4M empty strings (130 MB) took 981 s
    and 7.4 GB to load."""
    path = tmp_path / loading.EMBEDDED_FILE
    shutil.copyfile(loading.embedded_gguf_path(), path)
    n = 4_000_000
    insert_metadata(path, "bomb.arr", 9, struct.pack("<IQ", 8, n) + bytes(8 * n))
    for name in ("AutoModelForCausalLM", "AutoTokenizer"):
        monkeypatch.setattr(getattr(loading, name), "from_pretrained",
                            lambda *a, **k: pytest.fail("the bomb reached transformers"))
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="4000000 items"):
        loading.load_model(str(path))
    assert time.perf_counter() - start < 10  # mostly hashing the 130 MB file
