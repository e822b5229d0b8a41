"""Tuned and Jacobian lenses: the estimators pinned against exact references on tiny models,
the file round trip and its refusals, cancellation, and the lens() integration.

The J-lens reference is torch.autograd.functional.jacobian of the model's own forward (a test
hook replaces one block's output; the final norm is swapped for the identity), never the
backend under test.
"""

import pytest
import torch

import reprlab
from reprlab import FittedLens, LensNotFitted, Session, fit_jacobian_lens, fit_tuned_lens
from reprlab.jacobian_lens import jacobian_sums
from reprlab.lenses import lens
from reprlab.model_ref import ModelRef
from reprlab.translators import lens_path, load_lens, read_lens

TEXTS = ["hello world, a lens", "the cat sat on it", "one two three four", "lenses see in"]
HELD = ["held out words here", "and another text"]
SKIP = 2


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRLAB_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def s():
    return Session.tiny(seed=0)


def _quick_tuned(s, **kw):
    return fit_tuned_lens(s, TEXTS, heldout=HELD, steps=5, batch_tokens=8, skip=SKIP, **kw)


def _block_output_jacobian(s, text, layer):
    """d h_final[p'] / d h_layer[p] ``[T, d, T, d]`` by autograd.functional.jacobian."""
    model = s.model
    ids = torch.tensor([s.tokenizer(text)["input_ids"]])
    with torch.no_grad():
        start = model(ids, output_hidden_states=True).hidden_states[layer][0]
    norm, model.model.norm = model.model.norm, torch.nn.Identity()

    def f(x):
        if layer == 0:
            return model.model(inputs_embeds=x[None]).last_hidden_state[0]

        def swap(module, args, output):
            return (x[None], *output[1:]) if isinstance(output, tuple) else x[None]

        handle = model.model.layers[layer - 1].register_forward_hook(swap)
        try:
            return model.model(ids).last_hidden_state[0]
        finally:
            handle.remove()

    try:
        return torch.autograd.functional.jacobian(f, start, vectorize=True)
    finally:
        model.model.norm = norm


def test_the_exact_jacobian_lens_is_the_mean_of_exact_jacobians_over_the_same_positions(s,
                                                                                       cache):
    texts = TEXTS[:2]  # the reference Jacobians are [T, d, T, d] each: two texts, three layers
    fitted = fit_jacobian_lens(s, texts, heldout=HELD, skip=SKIP, dtype=None, dim_batch=24,
                               save=False)
    for layer in (0, 2, 3):
        total, sources = 0, 0
        for text in texts:
            jac = _block_output_jacobian(s, text, layer)  # [T, d, T, d]
            # targets p' >= skip summed, sources p >= skip averaged
            total = total + jac[SKIP:, :, SKIP:, :].sum(dim=(0, 2))
            sources += jac.shape[0] - SKIP
        assert torch.allclose(fitted.weight[layer], total / sources, atol=1e-4), layer
    assert torch.equal(fitted.bias, torch.zeros_like(fitted.bias))
    assert fitted.meta["source_positions"] == sources
    assert not list(cache.rglob("*.safetensors"))  # save=False writes nothing


def test_the_jacobian_of_the_last_block_output_with_itself_is_the_identity(s):
    out = s.site(f"blocks.{s.n_blocks - 1}.resid_post")
    ids = torch.tensor([s.tokenizer(TEXTS[0])["input_ids"]])
    sums = jacobian_sums(s.backend, ids, [out], out, skip=SKIP, dims=torch.arange(s.width))
    assert torch.equal(sums[0] / (ids.shape[1] - SKIP), torch.eye(s.width, dtype=sums.dtype))


def test_a_rotating_subset_of_rows_averages_each_row_over_its_own_prompts(s):
    exact = fit_jacobian_lens(s, TEXTS, heldout=HELD, skip=SKIP, dtype=None, save=False)
    sub = fit_jacobian_lens(s, TEXTS, heldout=HELD, skip=SKIP, dtype=None, save=False,
                            dims_per_prompt=s.width // 2)
    # every row comes from half the prompts: the same quantity, another sample of prompts
    assert not torch.allclose(sub.weight, exact.weight, atol=1e-6)
    rel = (sub.weight - exact.weight).norm() / exact.weight.norm()
    assert rel < 0.5
    with pytest.raises(ValueError, match="only 4 fit texts"):
        fit_jacobian_lens(s, TEXTS, heldout=HELD, skip=SKIP, dims_per_prompt=8, save=False)


def _rotated_tiny(k=1, seed=0):
    """A tiny llama whose stream is rotated by a random orthogonal Q after block ``k`` and
    un-rotated inside the final norm: the logit lens at hidden states ``0..k`` reads the
    stream in the wrong basis; an affine translator (Q) recovers it."""
    s = Session.tiny(seed=seed)
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(s.width, s.width, generator=g))
    s.model.lm_head.weight.data *= 30  # peaked distributions, so KL has something to measure
    block, norm = s.model.model.layers[k], s.model.model.norm
    block_forward, norm_forward = block.forward, norm.forward

    def rotated(*args, **kwargs):
        out = block_forward(*args, **kwargs)
        return (out[0] @ Q.T, *out[1:]) if isinstance(out, tuple) else out @ Q.T

    block.forward = rotated
    norm.forward = lambda h: norm_forward(h @ Q)
    s.refresh_fingerprint()
    return s, k


def test_the_tuned_lens_recovers_a_planted_rotation_the_logit_lens_cannot_see():
    s, k = _rotated_tiny()
    texts = [f"sample text {i}: " + "abcdefghij"[i % 10:] * 3 for i in range(24)]
    fitted = fit_tuned_lens(s, texts, heldout=0.25, steps=300, batch_tokens=32, lr=1e-2,
                            skip=SKIP, save=False)
    kl = fitted.heldout_kl()
    for layer in range(k + 1):  # the rotated-away layers
        assert kl["logit"][layer] > 0.5
        assert kl["tuned"][layer] < 0.2 * kl["logit"][layer], (layer, kl)


def test_the_lens_view_of_a_fitted_lens_is_the_head_of_its_affine_map_by_hand(s):
    fitted = _quick_tuned(s, save=False)
    r = lens(s, [HELD[0]], lens=fitted, k=3)
    assert r.lens == "tuned"
    ids = torch.tensor([s.tokenizer(HELD[0])["input_ids"]])
    with torch.no_grad():
        out = s.model(ids, output_hidden_states=True)
        final = torch.log_softmax(out.logits[0], -1)
        for layer in range(s.n_blocks):
            h = out.hidden_states[layer][0] @ fitted.weight[layer].T + fitted.bias[layer]
            logp = torch.log_softmax(s.model.lm_head(s.model.model.norm(h)), -1)
            kl = (final.exp() * (final - logp)).sum(-1).clamp_min(0)
            assert torch.allclose(r.kl_to_final[layer], kl, atol=1e-5), layer
    assert torch.allclose(r.kl_to_final[-1], torch.zeros(r.n_rows), atol=1e-6)


def test_save_and_reload_from_the_cache_is_bit_identical(s, cache):
    fitted = _quick_tuned(s)
    path = lens_path(s, "tuned")
    assert path.is_file() and str(path).startswith(str(cache))
    back = load_lens(s, "tuned")
    assert torch.equal(back.weight, fitted.weight) and torch.equal(back.bias, fitted.bias)
    assert back.meta == fitted.meta and back.layers == fitted.layers
    assert back.source == fitted.source
    assert torch.equal(load_lens(s, path).weight, fitted.weight)
    r = lens(s, HELD, lens="tuned")
    assert torch.equal(r.kl_to_final, lens(s, HELD, lens=fitted).kl_to_final)


def test_a_lens_fitted_for_another_model_is_refused(s, tmp_path):
    path = _quick_tuned(s, save=False).save(tmp_path / "mine.safetensors")
    other = Session.tiny(seed=1)
    with pytest.raises(ValueError, match="fitted for tiny-llama-seed0.*fit one for it with "
                                         r"reprlab.fit_tuned_lens\(session\)"):
        load_lens(other, path)
    wide = FittedLens("jacobian", ModelRef("big", "abc", 8, 2), (0, 1), torch.zeros(2, 8, 8),
                      torch.zeros(2, 8))
    with pytest.raises(ValueError, match="width 8, 2 blocks.*has width 64 and 4 blocks"):
        lens(s, HELD, lens=wide)


def test_a_cancelled_fit_leaves_no_file_and_the_next_fit_works(cache):
    s = Session.tiny(seed=0)  # fresh: transformers' output_hidden_states leaves its own hooks
    calls = []

    class Superseded(Exception):
        pass

    def progress(done, total):
        calls.append(done)
        if len(calls) > 3:
            raise Superseded

    for fit in (_quick_tuned, lambda s, **kw: fit_jacobian_lens(
            s, TEXTS, heldout=HELD, skip=SKIP, dim_batch=8, **kw)):
        calls.clear()
        with pytest.raises(Superseded):
            fit(s, progress=progress)
        assert not list(cache.rglob("*.safetensors")) and not list(cache.rglob("*.tmp"))
    assert s.backend.hook_count() == 0
    _quick_tuned(s, progress=lambda d, t: None)
    assert load_lens(s, "tuned").kind == "tuned"


def test_a_tampered_damaged_or_non_finite_file_is_refused(s, tmp_path):
    path = _quick_tuned(s, save=False).save(tmp_path / "t.safetensors")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x40  # one bit of one weight
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="changed after it was written"):
        read_lens(path)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable lens file"):
        load_lens(s, path)
    fitted = _quick_tuned(s, save=False)
    with pytest.raises(ValueError, match="non-finite"):
        FittedLens("tuned", fitted.source, fitted.layers, fitted.weight * float("nan"),
                   fitted.bias)


def test_the_lens_view_without_a_fit_says_how_to_fit_one(s):
    with pytest.raises(LensNotFitted, match=r"no tuned lens fitted for tiny-llama-seed0 yet: "
                       r"run reprlab.fit_tuned_lens\(session\) \(about \d+ min on 2 CPU "
                       r"cores\) or press Fit in the Lens tab"):
        lens(s, HELD, lens="tuned")
    with pytest.raises(LensNotFitted, match=r"fit_jacobian_lens\(session\)"):
        lens(s, HELD, lens="jacobian")
    assert reprlab.lenses.LENSES == ("logit", "tuned", "jacobian")


@pytest.mark.integration
def test_both_fits_run_on_the_embedded_model(smol, cache):
    texts = ["The history of the city begins with a small port on the river, where traders "
             "from the north and the south met every spring to sell wool, salt and timber."]
    held = ["Every morning the baker opens the shop at six and sells bread to the workers."]
    j = fit_jacobian_lens(smol, texts, heldout=held, save=False, tokens=20, dim_batch=96)
    t = fit_tuned_lens(smol, texts, heldout=held, steps=2, batch_tokens=4, save=False)
    for fitted in (j, t):
        assert fitted.weight.shape == (30, 576, 576) and torch.isfinite(fitted.weight).all()
        assert len(fitted.heldout_kl()["logit"]) == 30
    r = lens(smol, held, lens=j, positions=[-1])
    assert r.lens == "jacobian" and r.top_ids.shape[:2] == (31, 1)


def test_heldout_kl_is_the_lens_views_kl_averaged_over_tokens_past_skip(s):
    from reprlab.lens_corpus import heldout_kl

    fitted = _quick_tuned(s, save=False)
    got = heldout_kl(s, HELD, {"logit": None, "tuned": fitted}, skip=SKIP, rows_per_call=3)
    for name, which in (("logit", "logit"), ("tuned", fitted)):
        kls = [lens(s, [t], lens=which, layers=list(range(s.n_blocks)), k=1,
                    positions=list(range(SKIP, len(s.tokenizer(t)["input_ids"])))).kl_to_final
               for t in HELD]
        expected = torch.cat(kls, 1).double().mean(1)
        assert torch.allclose(torch.tensor(got[name], dtype=torch.float64), expected,
                              atol=1e-4), name
    assert fitted.meta["heldout_kl"]["tuned"] == heldout_kl(s, HELD, {"t": fitted},
                                                              skip=SKIP)["t"]
