"""Steering on a tiny model: exact reproduction at alpha 0, ablation, hooks always removed."""

import pytest
import torch

from reprlab import Direction, Steer, logit_shift
from reprlab.steering import alpha_sweep, steering_edits, token_diff


@pytest.fixture
def direction(tiny):
    g = torch.Generator().manual_seed(0)
    return Direction("d", torch.randn(tiny.width, generator=g), 2, "test")


def test_no_steer_and_alpha_zero_reproduce_plain_generation(tiny, direction):
    plain = tiny.generate("hello", max_new_tokens=12)
    assert tiny.generate("hello", max_new_tokens=12, steer=Steer(direction, alpha=0.0)) == plain
    enc = tiny.tokenizer("hello", return_tensors="pt")
    ref = tiny.model.generate(**enc, max_new_tokens=12, do_sample=False,
                              pad_token_id=tiny.tokenizer.pad_token_id)
    assert plain == tiny.tokenizer.decode(ref[0, enc["input_ids"].shape[1]:])


def test_seeded_sampling_is_reproduced_token_for_token(tiny, direction):
    kwargs = dict(max_new_tokens=15, temperature=1.0, seed=7)
    a = [t.id for t in tiny.stream("hello", **kwargs)]
    b = [t.id for t in tiny.stream("hello", steer=Steer(direction, alpha=0.0), **kwargs)]
    assert a == b
    assert tiny.generate("hello", steer=Steer(direction, alpha=2.0), **kwargs) != \
        tiny.generate("hello", **kwargs)


def test_add_shifts_the_hidden_state_by_alpha_units(tiny, direction):
    steer = Steer(direction, alpha=0.5)
    base = tiny.activations(["hello there"], layers=[2], cache=False).values[0, 0]
    with tiny.hooks(edits=steering_edits(tiny, steer)):
        moved = tiny.activations(["hello there"], layers=[2], cache=False).values[0, 0]
    assert torch.allclose(moved - base, 0.5 * steer.unit(tiny) * direction.vector, atol=1e-5)


def test_ablation_removes_the_direction_at_that_layer(tiny, direction):
    before = tiny.activations(["hello there"], layers=[2], cache=False).layer(2) @ direction.vector
    with tiny.hooks(edits=steering_edits(tiny, Steer(direction, mode="ablate"))):
        acts = tiny.activations(["hello there"], layers=[2], cache=False)
    assert before.abs().max() > 1e-3 and (acts.layer(2) @ direction.vector).abs().max() < 1e-5


def test_positions_new_leaves_the_prompt_untouched(tiny, direction):
    steer = Steer(direction, alpha=1.0, apply_to="new")
    edit = steering_edits(tiny, steer)[tiny.site(2)]
    prompt = torch.zeros(1, 5, tiny.width)
    out = edit(prompt)
    assert torch.equal(out[:, :4], prompt[:, :4]) and not torch.equal(out[:, 4], prompt[:, 4])
    assert not torch.equal(edit(torch.zeros(1, 1, tiny.width)), torch.zeros(1, 1, tiny.width))


def test_hooks_are_gone_after_an_exception_inside_generation(tiny, direction):
    stream = tiny.stream("hello", max_new_tokens=20, steer=Steer(direction, alpha=1.0))
    next(stream)
    assert tiny.backend.hook_count() == 0  # hooks are attached only while a token is computed
    with pytest.raises(RuntimeError):
        stream.throw(RuntimeError("interrupted"))
    assert tiny.backend.hook_count() == 0
    stopped = list(tiny.stream("hello", max_new_tokens=20, steer=Steer(direction, alpha=1.0),
                               should_stop=lambda: True))
    assert stopped == [] and tiny.backend.hook_count() == 0


def test_closing_a_stream_early_removes_hooks(tiny, direction):
    stream = tiny.stream("hello", max_new_tokens=20, steer=Steer(direction, alpha=1.0))
    next(stream)
    stream.close()
    assert tiny.backend.hook_count() == 0


def test_logit_shift_reports_risers_and_fallers(tiny, direction):
    shift = logit_shift(tiny, "hello", Steer(direction, alpha=2.0), k=5)
    assert len(shift.rose) == 5 and len(shift.fell) == 5
    assert all(after > before for _, before, after in shift.rose)
    assert all(after < before for _, before, after in shift.fell)
    assert shift.kl > 0 and torch.isclose(shift.after.sum(), torch.tensor(1.0), atol=1e-4)
    none = logit_shift(tiny, "hello", Steer(direction, alpha=0.0))
    assert none.kl == pytest.approx(0.0, abs=1e-6)


def test_alpha_sweep_is_flat_at_zero_and_moves_with_alpha(tiny, direction):
    sweep = alpha_sweep(tiny, ["hello", "abc"], direction, [-1, 0, 1],
                        positive=["a"], negative=["b"])
    assert sweep.scores.shape == (3,) and sweep.unit > 0
    assert len(set(sweep.scores.round(6))) == 3


def test_several_steers_compose(tiny, direction):
    other = Direction("e", torch.randn(tiny.width), 2, "test")
    both = [Steer(direction, alpha=1.0), Steer(other, mode="ablate")]
    with tiny.hooks(edits=steering_edits(tiny, both)):
        acts = tiny.activations(["hello"], layers=[2], cache=False)
    assert (acts.layer(2) @ other.vector).abs().max() < 1e-5


def test_token_diff_marks_only_changed_tokens():
    assert token_diff([1, 2, 3, 4], [1, 2, 9, 4]) == [False, False, True, False]
    assert token_diff([1, 2], [1, 2, 3]) == [False, False, True]


@pytest.mark.parametrize("kwargs, words", [
    ({"mode": "boost"}, "mode must be"), ({"apply_to": "some"}, "apply_to must be"),
    ({"alpha": float("nan")}, "alpha must be finite"),
])
def test_bad_steers_are_explained(direction, kwargs, words):
    with pytest.raises(ValueError, match=words):
        Steer(direction, **kwargs)


def test_unembedding_direction_needs_a_layer(tiny):
    u = Direction("u", torch.randn(tiny.width), None, "test", space="unembedding")
    with pytest.raises(ValueError, match="pass layer="):
        Steer(u, alpha=1.0)
    assert tiny.generate("hi", 5, steer=Steer(u, layer=tiny.n_blocks, alpha=0.5))
