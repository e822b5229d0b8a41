"""Directions in words: the read-out through the logit lens, against the tiny model's own modules
called by hand, and beside its random-direction null."""

import pytest
import torch

from reprlab import Direction, Session
from reprlab.lens_readout import REFERENCE_ROWS, read_out


@pytest.fixture(scope="module")
def s():
    return Session.tiny(seed=0)


def _by_hand(s, vector, layer, alpha):
    """Mean change of log-probabilities, from the model's norm and head called directly."""
    rows = s.geometry.reference_rows(layer)
    rows = rows[torch.linspace(0, len(rows) - 1, min(REFERENCE_ROWS, len(rows))).long()]
    step = alpha * s.geometry.typical_norm(layer)
    norm, head = s.model.model.norm, s.model.lm_head
    with torch.no_grad():
        before = torch.log_softmax(head(norm(rows)), -1)
        after = torch.log_softmax(head(norm(rows + step * vector)), -1)
    return (after - before).mean(0)


def test_the_read_out_matches_the_change_computed_by_hand(s):
    layer = 2
    vector = torch.randn(s.width, generator=torch.Generator().manual_seed(3))
    d = Direction("planted", vector, layer=layer, method="manual", source=s.ref)
    r = d.read_out(s, k=5, alpha=0.5, n_random=8)
    change = _by_hand(s, d.vector, layer, 0.5)
    top, bottom = torch.topk(change, 5), torch.topk(-change, 5)
    assert [c for _, c in r.promoted] == pytest.approx(top.values.tolist(), abs=1e-5)
    assert [c for _, c in r.suppressed] == pytest.approx((-bottom.values).tolist(), abs=1e-5)
    assert list(r.promoted_ids) == top.indices.tolist()
    assert list(r.suppressed_ids) == bottom.indices.tolist()
    assert r.layer == layer and r.lens == "logit" and len(r.rows()) == 10
    assert r.promoted[0][1] >= r.promoted[-1][1] > 0 > r.suppressed[0][1]


def test_a_direction_made_of_one_tokens_unembedding_stands_out_from_the_null(s):
    """Planted: at the final norm the direction of token t's unembedding row raises t's
    logit by the step times its norm, far beyond what random directions do."""
    unembed = s.backend.unembedding.float()
    t = int(unembed.norm(dim=-1).argmax())
    d = Direction("token", unembed[t], layer=s.n_blocks, method="manual", source=s.ref)
    r = read_out(s, d, k=3, alpha=1.0, n_random=19)
    assert r.promoted_ids[0] == t
    assert r.promoted[0][1] > r.null_high
    assert r.p_value == pytest.approx(1 / 20)
    assert "beyond what random directions do" in r.summary()
    random = Direction("noise", torch.randn(s.width, generator=torch.Generator().manual_seed(9)),
                       layer=s.n_blocks, method="manual", source=s.ref)
    assert read_out(s, random, k=3, alpha=1.0, n_random=19).p_value > 0.05


def test_bad_read_out_inputs_say_what_to_pass(s):
    d = Direction("x", torch.ones(s.width), layer=1, method="manual", source=s.ref)
    with pytest.raises(ValueError, match="alpha=0"):
        d.read_out(s, alpha=0)
    with pytest.raises(ValueError, match="lens='nope'"):
        d.read_out(s, lens="nope")
    other = Session.tiny(seed=1)
    with pytest.raises(ValueError, match="another model"):
        d.read_out(other)
