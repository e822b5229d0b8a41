"""reprlab's activations agree with TransformerLens and nnsight wrapping the same model.

The peers come from the ``peers`` extra. Without it these tests skip, unless
REPRLAB_REQUIRE_PEERS=1 (as ``make test`` sets, since it installs them).
"""

import importlib.util
import os

import pytest
from conftest import assert_close_relative

from bench import peers


def _require_peers():
    missing = [m for m in ("nnsight", "transformer_lens") if importlib.util.find_spec(m) is None]
    if missing:
        if os.environ.get("REPRLAB_REQUIRE_PEERS") == "1":
            pytest.fail(f"{missing} not installed: pip install -c constraints.txt -e '.[peers]'")
        pytest.skip(f"{missing} not installed (the peers extra)")


TEXTS = ["The cat sat on the mat.", "Paris is the capital of France.", "I loved it!",
         "Monday comes after Sunday, and Tuesday comes after Monday."]


def _agreement(session, name):
    batches, order = peers.make_batches(session, TEXTS, batch_size=3)
    values = peers.PEERS[name](session)(batches)
    ours = session.activations(TEXTS, batch_size=3, progress=False, cache=False)
    return values, ours.values.float().transpose(0, 1)[order]


@pytest.mark.parametrize("name", sorted(peers.PEERS))
def test_peer_reads_the_same_hidden_states_on_the_tiny_model(tiny, name):
    _require_peers()
    theirs, ours = _agreement(tiny, name)
    assert theirs.shape == ours.shape == (len(TEXTS), tiny.n_blocks + 1, tiny.info.width)
    assert_close_relative(theirs, ours, rtol=1e-5)


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(peers.PEERS))
def test_peer_reads_the_same_hidden_states_on_smollm2(smol, name):
    _require_peers()
    theirs, ours = _agreement(smol, name)
    assert theirs.shape == ours.shape
    # TransformerLens runs eager attention, reprlab SDPA: kernel-order drift only
    assert_close_relative(theirs, ours, rtol=1e-4)


def test_peers_benchmark_quick_mode_times_both_peers(capsys):
    _require_peers()
    results = peers.main(["--quick"])
    assert not [key for key in results if "unavailable" in key]
    for name in peers.PEERS:
        assert results[f"reprlab / {name} speed"] > 0
        assert results[f"{name} max |diff| vs reprlab"] < 1e-4
    assert "reprlab / nnsight speed" in capsys.readouterr().out
