"""Directions persist: safetensors + JSON metadata round trips, and llama.cpp control vectors."""

import json
import warnings

import gguf
import numpy as np
import pytest
import torch
from safetensors import safe_open

from reprlab import Direction, ModelRef, Session, Steer
from reprlab.direction_files import save_directions
from reprlab.geometry import residual_vector


def build(session: Session, layer: int, name: str) -> Direction:
    pos = session.activations(["good fun", "great joy"], progress=False)
    neg = session.activations(["bad pain", "awful loss"], progress=False)
    d = Direction.mean_difference(pos, neg, layer, name=name)
    return Direction(d.name, d.vector, d.layer, d.method, info={"n": np.int64(2), "t": (1, 2)},
                     source=d.source)


def test_registry_saved_and_loaded_in_a_new_session_is_bit_identical(tmp_path):
    s = Session.tiny(seed=0)
    s.directions.add(build(s, 2, "mood"))
    u = Direction("gender", torch.randn(s.width), None, "counterfactual", space="unembedding",
                  source=s.ref)
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
    narrow = Direction("narrow", torch.randn(32), 2, "test",
                       source=ModelRef("a-32-wide-model", "0123abcd", 32, 4))
    s.directions.add(build(s, 2, "mood"))
    path = save_directions(tmp_path / "mixed.safetensors", [*s.directions, narrow])
    other = Session.tiny(seed=0)
    with pytest.raises(ValueError, match="has 32 dims but tiny-llama-seed0 has width 64"):
        other.directions.load(path)
    assert len(other.directions) == 0  # the fitting direction was not added either
    with pytest.raises(ValueError, match="has 32 dims but"):
        Direction.load(narrow.save(tmp_path / "narrow.safetensors"), session=other)
    assert Direction.load(tmp_path / "narrow.safetensors").width == 32  # without a session


def test_loading_onto_other_weights_is_refused_unless_adopted_on_purpose(tmp_path):
    s, other = Session.tiny(seed=0), Session.tiny(seed=1)
    path = build(s, 2, "mood").save(tmp_path / "mood.safetensors")
    with pytest.raises(ValueError, match="another model .*adopt=True"):
        other.directions.load(path)
    with pytest.raises(ValueError, match="another model .*adopt=True"):
        Direction.load(path, session=other)
    assert len(other.directions) == 0
    (d,) = other.directions.load(path, adopt=True)
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
    sites = ["blocks.1.resid_post", "blocks.2.resid_post", "blocks.3.resid_post"]
    path = d.export_gguf(tmp_path / "mood.gguf", s, sites=sites)
    fields, tensors = read_gguf(path)
    assert fields["general.architecture"] == "controlvector"
    assert fields["controlvector.model_hint"] == "llama"
    assert fields["controlvector.layer_count"] == 3
    # llama.cpp adds direction.k to the output of block k (0-based) = hidden state k + 1
    assert sorted(tensors) == ["direction.1", "direction.2", "direction.3"]
    unit = residual_vector(s, d).numpy()
    for k, site in enumerate(sites, 1):
        v = tensors[f"direction.{k}"]
        assert v.dtype == np.float32 and v.shape == (s.width,)
        np.testing.assert_allclose(v, unit * Steer(d, site=site, alpha=1).unit(s), rtol=1e-6)
    # layers= is sugar for the same sites where hidden states exist (2, 3 -> blocks 1, 2)
    by_layer = read_gguf(d.export_gguf(tmp_path / "l.gguf", s, layers=[2, 3]))[1]
    for k in (1, 2):
        np.testing.assert_array_equal(by_layer[f"direction.{k}"], tensors[f"direction.{k}"])


def test_gguf_round_trip_gives_back_the_direction_sites_and_strengths(tmp_path):
    s = Session.tiny(seed=0)
    d = build(s, 2, "mood")
    sites = ["blocks.1.resid_post", "blocks.3.resid_post"]
    back = Direction.import_gguf(d.export_gguf(tmp_path / "m.gguf", s, sites=sites), s)
    assert [b.info["llama_cpp_block"] for b in back] == [1, 3]
    assert (back[0].layer, back[0].site) == (2, None)  # hidden state 2
    assert (back[1].layer, back[1].site) == (None, "blocks.3.resid_post")  # before the norm
    for b in back:
        assert torch.allclose(b.vector, residual_vector(s, d).cpu(), atol=1e-6)
        assert b.info["scale"] == pytest.approx(1.0, rel=1e-5)  # exported at alpha 1


def test_gguf_export_after_the_final_norm_is_refused_with_the_site_to_use(tmp_path):
    s = Session.tiny(seed=0)
    with pytest.raises(ValueError, match="after the final norm.*blocks.3.resid_post"):
        build(s, 4, "late").export_gguf(tmp_path / "x.gguf", s)


def test_gguf_export_refuses_layers_llama_cpp_cannot_take(tmp_path):
    s = Session.tiny(seed=0)
    with pytest.raises(ValueError, match="start at the output of block 1 .hidden state 2"):
        build(s, 1, "early").export_gguf(tmp_path / "x.gguf", s)
    u = Direction("u", torch.randn(s.width), None, "t", space="unembedding")
    with pytest.raises(ValueError, match="pass layer="):
        u.export_gguf(tmp_path / "u.gguf", s)
