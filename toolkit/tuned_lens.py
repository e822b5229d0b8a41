"""The tuned lens (Belrose et al. 2023, arXiv 2303.08112): per layer an affine translator
``h + A_l h + b_l`` into the last block's output space, identity-initialised and trained to
minimise KL(final || lens) over the whole vocabulary.

The hidden states of the fit texts are read once (one forward each); every training step then
sends a random batch of token rows at every layer through the final norm and the head in one
call, the head matmul in bfloat16 by default (the head, ``[vocab, width]``, is nearly all the
cost), with the model's own distribution in float32 as the target.

>>> fitted = fit_tuned_lens(s)                      # about 10 min on 2 cores  # doctest: +SKIP
>>> lens(s, ["The capital of France is"], lens="tuned").summary()   # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from .activations import extract_tokens
from .checks import as_int
from .lens_corpus import ProgressFn, finish_fit, lens_sites, stage, texts_for_fit
from .translators import FittedLens

if TYPE_CHECKING:
    from .session import Session


def fit_tuned_lens(session: Session, texts: Sequence[str] | None = None, *,
                   heldout: float | Sequence[str] = 0.2, n_texts: int = 40, tokens: int = 128,
                   steps: int = 250, batch_tokens: int = 24, lr: float = 1e-3, skip: int = 16,
                   dtype: torch.dtype | None = torch.bfloat16, seed: int = 0,
                   save: bool = True, progress: ProgressFn | None = None) -> FittedLens:
    """Fit the tuned lens of every hidden state ``0..n-1`` and (``save``) cache it for this
    model, where ``lens(session, texts, lens="tuned")`` finds it.

    ``texts``: default ``n_texts`` texts of about ``tokens`` tokens the model writes itself
    (:func:`~reprlab.lens_corpus.model_texts`); ``heldout`` (a fraction or texts) is held
    apart, and ``meta["heldout_kl"]`` holds the mean KL there per layer of this lens and of
    the logit lens. Training: Adam (``lr``, linear decay) for ``steps`` steps of
    ``batch_tokens`` random token rows at every layer, positions ``>= skip`` only (the first
    tokens are attention sinks). ``dtype``: the head's matmul (None = the model's own).
    ``progress(done, total)`` is called every step; if it raises (or on KeyboardInterrupt)
    the fit stops and nothing is saved.

    Defaults chosen for the embedded model on 2 CPU cores: 32 fit + 8 held-out texts of
    128 tokens (2,884 fit rows), 250 steps x 24 rows x 30 layers. Measured once, on 2 cores
    shared with two other jobs: 516 s to read the states and train, plus 234 s generating
    the 40 texts (cached, shared with the J-lens); held-out KL below the logit lens's at
    every layer (0.58 vs 1.43 nats at hidden state 29, 3.8 vs 16.0 at 15).

    >>> fit_tuned_lens(s, progress=lambda d, t: print(d, t))       # doctest: +SKIP
    """
    steps = as_int(steps, "steps", minimum=1)
    batch_tokens = as_int(batch_tokens, "batch_tokens", minimum=1)
    skip = as_int(skip, "skip", minimum=0)
    start = time.perf_counter()
    fit, held = texts_for_fit(session, texts, heldout, n_texts=n_texts, tokens=tokens,
                              seed=seed, progress=stage(progress, 0, 150))
    generated = time.perf_counter()
    hidden = _hidden_states(session, fit, skip, stage(progress, 150, 200))
    n, rows, d = session.n_blocks, hidden.shape[1], session.width
    where = session.site(f"blocks.{n - 1}.resid_post")
    A = torch.zeros(n, d, d, requires_grad=True)
    b = torch.zeros(n, d, requires_grad=True)
    opt = torch.optim.Adam([A, b], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)
    gen = torch.Generator().manual_seed(seed)
    tick = stage(progress, 200, 900)
    losses = []
    with session.lock:
        for step in range(steps):
            idx = torch.randint(rows, (batch_tokens,), generator=gen)
            with torch.no_grad():
                target = torch.softmax(session.backend.logits_at(hidden[n, idx], where), -1)
            h = hidden[:n, idx]  # [layers, batch, width]
            out = h + torch.baddbmm(b[:, None], h, A.transpose(1, 2))
            logp = torch.log_softmax(session.backend.logits_at(
                out.reshape(n * batch_tokens, d), where, dtype=dtype), -1)
            # cross-entropy to the final distribution = KL(final || lens) + a constant
            loss = -torch.einsum("lbv,bv->lb", logp.view(n, batch_tokens, -1),
                                 target.to(logp.device)).mean(1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()) / n)
            if tick is not None:
                tick(step + 1, steps)
    fitted = time.perf_counter()
    eye = torch.eye(d)
    facts = {"texts": len(fit), "tokens": rows, "fit_seconds": round(fitted - generated, 1),
             "texts_seconds": round(generated - start, 1), "seed": seed,
             "settings": {"steps": steps, "batch_tokens": batch_tokens, "lr": lr, "skip": skip,
                          "dtype": str(dtype), "optimizer": "adam, linear decay",
                          "texts": "model's own" if texts is None else "given",
                          "n_texts": n_texts, "tokens": tokens},
             "loss_first_last": [round(losses[0], 4), round(sum(losses[-10:]) /
                                                             len(losses[-10:]), 4)]}
    return finish_fit(session, "tuned", eye + A.detach(), b.detach(), held, skip=skip,
                      facts=facts, save=save, progress=stage(progress, 900, 1000))


def _hidden_states(session, texts, skip, progress) -> torch.Tensor:
    """Hidden states ``0..n-1`` and the last block's output ``[n + 1, rows, width]`` of the
    token positions ``>= skip`` of every text (one forward each, edits paused)."""
    sites = lens_sites(session)
    parts = []
    with session.without_edits():
        for i, text in enumerate(texts):
            values, _ = extract_tokens(session.backend, session.tokenizer, text, sites,
                                       max_tokens=session.context_length)
            parts.append(values[:, skip:])
            if progress is not None:
                progress(i + 1, len(texts))
    hidden = torch.cat(parts, 1)
    if hidden.shape[1] == 0:
        raise ValueError(f"no token past position {skip} in the fit texts: pass longer texts "
                         "or a smaller skip")
    return hidden


__all__ = ["fit_tuned_lens"]
