"""Directions persist: safetensors + JSON metadata round trips, and llama.cpp control vectors."""

import json
import warnings

import gguf
import numpy as np
import pytest
import torch
from safetensors import safe_open

from reprlab import Direction, Session, Steer
from reprlab.direction_files import save_directions
from reprlab.steering import residual_vector


def build(session: Session, layer: int, name: str) -> Direction:
    pos = session.activations(["good fun", "great joy"], progress=False)
    neg = session.activations(["bad pain", "awful loss"], progress=False)
    d = Direction.mean_difference(pos, neg, layer, name=name)
    return Direction(d.name, d.vector, d.layer, d.method, info={"n": np.int64(2), "t": (1, 2)},
                     model=d.model, fingerprint=d.fingerprint)


def test_registry_saved_and_loaded_in_a_new_session_is_bit_identical(tmp_path):
    s = Session.tiny(seed=0)
    s.directions.add(build(s, 2, "mood"))
    u = Direction("gender", torch.randn(s.width), None, "counterfactual", space="unembedding",
                  model=s.name, fingerprint=s.fingerprint)
    s.directions.add(u)
    path = s.directions.save(tmp_path / "registry.safetensors")

    fresh = Session.tiny(seed=0)  # the same model, loaded again
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same fingerprint: no warning
        loaded = fresh.directions.load(path)
    assert fresh.directions.names() == ["mood", "gender"]
    for old, new in zip(s.directions, loaded):
        assert torch.equal(old.vector, new.vector)  # bit-identical
        assert (new.name, new.layer, new.method, new.space, new.fingerprint, new.model) == \
            (old.name, old.layer, old.method, old.space, old.fingerprint, old.model)
    assert loaded[0].info == {"n": 2, "t": [1, 2]}


def test_file_is_safetensors_with_json_metadata_and_no_pickle(tmp_path):
    s = Session.tiny(seed=0)
    path = build(s, 2, "mood").save(tmp_path / "mood.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["reprlab"])
        assert list(f.keys()) == ["0"]
    (entry,) = meta["directions"]
    assert entry["width"] == s.width and entry["fingerprint"] == s.fingerprint
    assert entry["layer"] == 2 and entry["method"] == "mean_difference" and meta["reprlab_version"]
    assert b"pickle" not in path.read_bytes() and path.read_bytes()[:1] != b"\x80"


def test_loading_onto_another_width_is_an_error_and_adds_nothing(tmp_path):
    s = Session.tiny(seed=0)
    narrow = Direction("narrow", torch.randn(32), 2, "test", model="a-32-wide-model",
                       fingerprint="0123abcd")
    s.directions.add(build(s, 2, "mood"))
    path = save_directions(tmp_path / "mixed.safetensors", [*s.directions, narrow])
    other = Session.tiny(seed=0)
    with pytest.raises(ValueError, match="has 32 dims but tiny-llama-seed0 has width 64"):
        other.directions.load(path)
    assert len(other.directions) == 0  # the fitting direction was not added either
    with pytest.raises(ValueError, match="has 32 dims but"):
        Direction.load(narrow.save(tmp_path / "narrow.safetensors"), session=other)
    assert Direction.load(tmp_path / "narrow.safetensors").width == 32  # without a session


def test_loading_onto_other_weights_of_the_same_width_warns_and_adopts(tmp_path):
    s, other = Session.tiny(seed=0), Session.tiny(seed=1)
    path = build(s, 2, "mood").save(tmp_path / "mood.safetensors")
    with pytest.warns(UserWarning, match="saved from tiny-llama-seed0 .* may not transfer"):
        (d,) = other.directions.load(path)
    assert d.fingerprint == other.fingerprint and "mood" in other.directions


def test_loading_a_taken_name_keeps_the_old_direction(tmp_path):
    s = Session.tiny(seed=0)
    mine = build(s, 3, "mood")
    s.directions.add(mine)
    path = build(s, 2, "mood").save(tmp_path / "mood.safetensors")
    (loaded,) = s.directions.load(path)
    assert loaded.name == "mood-2" and s.directions["mood"] is mine


def test_bad_files_are_explained(tmp_path):
    s = Session.tiny(seed=0)
    with pytest.raises(FileNotFoundError, match="no directions file"):
        s.directions.load(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors file|cannot read"):
        Direction.load(junk)
    with pytest.raises(ValueError, match="registry is empty"):
        s.directions.save(tmp_path / "empty.safetensors")


def read_gguf(path):
    reader = gguf.GGUFReader(str(path))
    fields = {}
    for name, field in reader.fields.items():
        value = field.parts[field.data[0]]
        fields[name] = bytes(value).decode() if field.types[0] == gguf.GGUFValueType.STRING \
            else value.tolist()[0]
    tensors = {t.name: np.array(t.data, dtype=np.float32) for t in reader.tensors}
    return fields, tensors


def test_gguf_export_reads_back_as_a_llama_cpp_control_vector(tmp_path):
    s = Session.tiny(seed=0)
    d = build(s, 2, "mood")
    path = d.export_gguf(tmp_path / "mood.gguf", s, layers=[2, 3, 4])
    fields, tensors = read_gguf(path)
    assert fields["general.architecture"] == "controlvector"
    assert fields["controlvector.model_hint"] == "llama"
    assert fields["controlvector.layer_count"] == 3
    # llama.cpp adds direction.k to the output of block k (0-based) = hidden state k + 1
    assert sorted(tensors) == ["direction.1", "direction.2", "direction.3"]
    unit = residual_vector(s, d).numpy()
    for layer in (2, 3, 4):
        v = tensors[f"direction.{layer - 1}"]
        assert v.dtype == np.float32 and v.shape == (s.width,)
        np.testing.assert_allclose(v, unit * Steer(d, layer=layer, alpha=1).unit(s), rtol=1e-6)


def test_gguf_export_refuses_layers_llama_cpp_cannot_take(tmp_path):
    s = Session.tiny(seed=0)
    with pytest.raises(ValueError, match="start at hidden state 2"):
        build(s, 1, "early").export_gguf(tmp_path / "x.gguf", s)
    u = Direction("u", torch.randn(s.width), None, "t", space="unembedding")
    with pytest.raises(ValueError, match="pass layer="):
        u.export_gguf(tmp_path / "u.gguf", s)
