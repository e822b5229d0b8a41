"""Directions carry their model; the registry never loses or replaces one silently."""

import dataclasses

import pytest
import torch

from reprlab import Direction, Session, Steer
from reprlab.geometry import project


def planted(session: Session, layer: int = 2, name: str = "d") -> Direction:
    pos = session.activations(["good fun", "great joy"], progress=False)
    neg = session.activations(["bad pain", "awful loss"], progress=False)
    return Direction.mean_difference(pos, neg, layer, name=name)


def test_activations_carry_their_session_so_projection_needs_none(tiny):
    d = planted(tiny)
    acts = tiny.activations(["one text", "another text"], progress=False)
    # a value naming its model: the live session found from it has the same weights
    assert acts.source == tiny.ref and acts.select([2], rows=[1]).source == tiny.ref
    assert acts.session is tiny and acts.select([2], rows=[1]).session is tiny  # its maker
    for inner in ("euclidean", "standardized", "causal"):
        expected = project(tiny, d, acts, inner)
        assert torch.equal(d.project(acts, inner=inner), expected)
    # causal by hand: both sides mapped by Cov^{1/2}, the direction renormalized there
    unwhiten = tiny.geometry.causal.unwhiten
    v = d.vector @ unwhiten
    by_hand = acts.layer(2) @ unwhiten @ (v / v.norm())
    assert torch.allclose(d.project(acts, inner="causal"), by_hand, atol=1e-5)


def test_direction_from_another_model_of_the_same_width_is_refused_until_adopted(tiny):
    other = Session.tiny(seed=1)
    alien = planted(other, name="alien")
    acts = tiny.activations(["a text"], progress=False)
    assert alien.width == tiny.width and alien.fingerprint == other.fingerprint
    with pytest.raises(ValueError, match="another model .*adopted_by"):
        alien.project(acts)
    with pytest.raises(ValueError, match="another model"):
        tiny.directions.add(alien)
    adopted = alien.adopted_by(tiny)
    assert adopted.fingerprint == tiny.fingerprint and adopted.model == tiny.name
    assert torch.equal(adopted.project(acts), acts.layer(2) @ alien.vector)
    with pytest.raises(ValueError, match="cannot combine .*another model"):
        alien + planted(tiny)


def test_unembedding_direction_needs_a_layer_with_or_without_session(tiny):
    u = Direction("u", torch.randn(tiny.width), None, "test", space="unembedding")
    acts = tiny.activations(["a text"], progress=False)
    bare = dataclasses.replace(acts, source=None)
    for a in (acts, bare):
        with pytest.raises(ValueError, match="unembedding space: pass layer="):
            u.project(a)
    last = tiny.n_blocks
    assert torch.allclose(u.project(acts, layer=last), u.project(bare, layer=last))
    with pytest.raises(ValueError, match="pass layer="):
        Steer(u, alpha=1.0)


def test_registry_refuses_a_different_direction_of_a_taken_name(tiny):
    a, b = planted(tiny, 2, "x"), planted(tiny, 3, "x")
    tiny.directions.add(a)
    for again in (b, a):  # a taken name is refused, even for the same vector
        with pytest.raises(ValueError, match="exists: pick another name.*overwrite=True"):
            tiny.directions.add(again)
    assert tiny.directions["x"] is a
    assert tiny.directions.add_new(a).name == "x"  # the same direction: no copy
    assert tiny.directions.add_new(b).name == "x-2"
    tiny.directions.add(b, overwrite=True)
    assert tiny.directions["x"] is b and tiny.directions.names() == ["x", "x-2"]


def test_registry_checks_width_on_add(tiny):
    with pytest.raises(ValueError, match="has 7 dims but the residual stream here has 64"):
        tiny.directions.add(Direction("short", torch.randn(7), 1, "test"))
    with pytest.raises(ValueError, match="7 dims"):
        tiny.directions.add_new(Direction("short", torch.randn(7), 1, "test"))
    assert len(tiny.directions) == 0


def test_registry_holds_bound_listeners_weakly(tiny):
    heard = []

    class Listener:
        def hear(self, event, d):
            heard.append(d.name)

    keep, drop = Listener(), Listener()
    tiny.directions.observe(keep.hear)
    tiny.directions.observe(drop.hear)
    del drop
    tiny.directions.add(planted(tiny, name="one"))
    assert heard == ["one"] and tiny.directions.listeners == 1
