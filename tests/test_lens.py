"""The logit lens: the head applied to every layer's stream, pinned against hand computations.

The independent references are the model's own forward (``session.model(ids).logits``) and the
tiny llama's modules called by hand, never the backend under test.
"""

import pickle
import time

import pytest
import torch

import reprlab
from reprlab import Session
from reprlab.lenses import LensResult, lens
from reprlab.model_ref import ModelRef

TEXTS = ["hello world", "a lens on it"]


@pytest.fixture(scope="module")
def s():
    return Session.tiny(seed=0)


def _model_logp(s, text):
    ids = torch.tensor([s.tokenizer(text)["input_ids"]])
    with torch.no_grad():
        return torch.log_softmax(s.model(ids).logits[0].float(), -1)  # [tokens, vocab]


def _vocab(s):
    return s.backend.unembedding.shape[0]


def test_the_last_layer_reproduces_the_models_own_next_token_distribution(s):
    vocab = _vocab(s)
    r = lens(s, TEXTS, layers=[s.n_blocks], k=vocab)
    for i, text in enumerate(TEXTS):
        expected = _model_logp(s, text)
        rows = (r.text_index == i).nonzero().flatten()
        got = torch.full_like(expected, float("nan"))
        got.scatter_(1, r.top_ids[0, rows], r.top_probs[0, rows].log())
        assert torch.allclose(got, expected, atol=1e-5)
        assert r.tokens[i] == tuple(s.token_activations(text).tokens)
    assert torch.equal(r.final_top_ids, r.top_ids[0, :, 0])


def test_logits_at_an_intermediate_layer_is_lm_head_of_final_norm_of_the_stream(s):
    ids = torch.tensor([s.tokenizer("middle of the stack")["input_ids"]])
    with torch.no_grad():
        hidden = s.model(ids, output_hidden_states=True).hidden_states[2][0]
        by_hand = s.model.lm_head(s.model.model.norm(hidden))
        assert torch.allclose(s.backend.logits_at(hidden, 2), by_hand, atol=1e-5)
        # at the final norm site the stream is already normed: the head only
        normed = s.model.model.norm(hidden)
        assert torch.allclose(s.backend.logits_at(normed, "final_norm"),
                              s.model.lm_head(normed), atol=1e-5)


def test_logits_at_ignores_attached_edits(s):
    hidden = torch.randn(3, s.width, generator=torch.Generator().manual_seed(0))
    plain = s.backend.logits_at(hidden, 1)
    with s.hooks(edits={s.n_blocks: lambda h: h + 100.0}):
        assert torch.equal(s.backend.logits_at(hidden, 1), plain)


def test_kl_at_the_last_layer_is_zero_and_entropy_is_the_closed_form(s):
    r = lens(s, TEXTS, k=3)
    assert r.layers[-1] == s.n_blocks
    assert torch.all(r.kl_to_final[-1] == 0)
    assert torch.all(r.kl_to_final[:-1] > 0)
    logp = torch.cat([_model_logp(s, t) for t in TEXTS])
    assert torch.allclose(r.entropy[-1], -(logp.exp() * logp).sum(-1), atol=1e-5)


def test_a_tiny_memory_budget_gives_the_same_numbers_as_a_large_one(s):
    big = lens(s, TEXTS, targets=["o", "t"], k=5, max_bytes="1GB")
    small = lens(s, TEXTS, targets=["o", "t"], k=5, max_bytes=1)  # one row at a time
    seen = []
    lens(s, TEXTS, k=5, max_bytes=1, progress=lambda done, total: seen.append((done, total)))
    n_rows = len(big.text_index)
    assert seen[-1] == (len(TEXTS) + n_rows,) * 2  # texts read, then one chunk per row
    for name in ("top_ids", "target_rank", "final_top_ids"):
        assert torch.equal(getattr(big, name), getattr(small, name)), name
    assert big.top_tokens == small.top_tokens
    # the head's matmul over 1 row and over all rows rounds float32 sums differently (~1e-7)
    for name in ("top_probs", "entropy", "kl_to_final", "target_prob"):
        assert torch.allclose(getattr(big, name), getattr(small, name), rtol=1e-6,
                              atol=1e-6), name


def test_target_probability_and_rank_match_a_hand_computation(s):
    text, target = "hello world", "o"
    (target_id,) = s.tokenizer(target, add_special_tokens=False)["input_ids"]
    r = lens(s, [text], layers=[1, s.n_blocks], positions=[3, -1], targets=[target])
    ids = torch.tensor([s.tokenizer(text)["input_ids"]])
    with torch.no_grad():
        states = s.model(ids, output_hidden_states=True).hidden_states
    for li, layer in enumerate(r.layers):
        h = states[layer][0]
        if layer != s.n_blocks:  # hidden state n is already after the final norm
            h = s.model.model.norm(h)
        logp = torch.log_softmax(s.model.lm_head(h), -1)[[3, len(ids[0]) - 1]]
        p = logp[:, target_id]
        assert torch.allclose(r.target_prob[li], p.exp(), atol=1e-6)
        assert torch.equal(r.target_rank[li], (logp > p[:, None]).sum(-1) + 1)
    assert r.position.tolist() == [3, len(ids[0]) - 1]


def test_a_target_of_several_tokens_names_its_pieces_and_offers_the_first(s):
    with pytest.raises(ValueError, match=r"2 tokens \['a', 'b'\].*first piece, 'a'"):
        lens(s, ["x"], targets=["ab"])
    with pytest.raises(ValueError, match="one per text"):
        lens(s, TEXTS, targets=["a"])


def test_bad_inputs_get_errors_that_say_what_to_do(s):
    with pytest.raises(ValueError, match="empty or blank"):
        lens(s, ["fine", ""])
    with pytest.raises(ValueError, match="position 5 is past texts\\[1\\], which has 2 tokens"):
        lens(s, ["long enough", "ab"], positions=[0, 5])
    with pytest.raises(ValueError, match="position -3 is past"):
        lens(s, ["ab"], positions=[-3])
    with pytest.raises(ValueError, match="lens='tunned': one of 'logit', 'tuned', 'jacobian'"):
        lens(s, TEXTS, lens="tunned")
    with pytest.raises(ValueError, match="layer 9 out of range"):
        lens(s, TEXTS, layers=[9])


def _constructed(top1, final, layers=(0, 1, 2, 3)):
    top1 = torch.tensor(top1)  # [layers, rows]
    L, R = top1.shape
    ids = torch.stack([top1, top1 + 1], dim=-1)
    zeros = torch.zeros(L, R)
    return LensResult(
        source=ModelRef("m", "f", 8, 3), layers=layers, texts=("t",),
        tokens=(tuple("abc"[:R]),), positions=(tuple(range(R)),),
        text_index=torch.zeros(R, dtype=torch.long), position=torch.arange(R), top_ids=ids,
        top_probs=torch.full((L, R, 2), 0.5), top_tokens=(((("x", "y"),) * R),) * L,
        entropy=zeros, kl_to_final=zeros, final_top_ids=torch.tensor(final))


def test_commits_at_is_the_first_layer_from_which_top1_stays_the_final_top1():
    r = _constructed([[7, 1, 5], [7, 2, 6], [9, 2, 5], [7, 2, 5]], final=[7, 2, 5])
    #  row 0: 7 7 9 7 -> from layer 3; row 1: 1 2 2 2 -> from 1; row 2: 5 6 5 5 -> from 2
    assert r.commits_at() == [3, 1, 2]
    # a final top-1 the last listed layer does not reach (the final layer was not kept)
    r = _constructed([[4, 4], [4, 3]], final=[5, 3], layers=(0, 2))  # [layers, rows]
    assert r.commits_at() == [None, 2]
    assert "not at all in 1 of 2 rows" in r.summary()


def test_the_result_pickles_without_the_session_and_rows_have_the_documented_keys(s):
    r = lens(s, TEXTS, layers=[0, 2], positions=[-1], targets=["o", "t"], k=4)
    blob = pickle.dumps(r)
    assert len(blob) < 20_000
    back = pickle.loads(blob)
    assert back.source == s.ref and torch.equal(back.top_ids, r.top_ids)
    rows = r.rows()
    assert len(rows) == 2 * 2
    assert set(rows[0]) == {"layer", "text_index", "position", "token", "top_token",
                            "top_prob", "entropy", "kl_to_final", "target", "target_prob",
                            "target_rank"}
    assert rows[-1]["layer"] == 2 and rows[-1]["text_index"] == 1
    assert rows[-1]["token"] == r.tokens[1][0] == "t" and rows[-1]["target"] == "t"
    assert lens(s, TEXTS, positions=[0]).rows()[0]["target_prob"] is None
    assert r.summary().startswith("logit lens over 2 positions of 2 texts at 2 layers")
    assert reprlab.lens is lens and reprlab.LensResult is LensResult


@pytest.mark.integration
def test_the_lens_on_the_embedded_model_ends_at_its_own_prediction(smol):
    text = ("The quick brown fox jumps over the lazy dog while the farmer watches from the "
            "old red barn near the river on a sunny afternoon in late summer, and")  # 30 tokens
    start = time.perf_counter()
    r = lens(smol, [text], k=10)
    seconds = time.perf_counter() - start
    n = len(r.text_index)
    assert r.top_ids.shape == (smol.n_blocks + 1, n, 10)
    assert torch.allclose(r.top_probs[-1, :, 0], _model_logp(smol, text).exp().max(-1).values,
                          atol=1e-4)
    assert torch.all(r.kl_to_final[-1] == 0) and r.kl_to_final[0].mean() > 1
    print(f"\nlens over {smol.n_blocks + 1} layers x {n} tokens, k=10: {seconds:.2f} s")
