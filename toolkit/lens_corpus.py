"""What fitted lenses are trained and judged on: the model's own text, a held-out split, and
the held-out KL of a lens per layer.

By default a lens is fitted on continuations the model writes itself (seeded sampling, batched,
from the built-in ``prompts`` dataset: nothing is downloaded), cached beside the lenses so a
second fit reuses them. Part of the texts is held apart, and every lens is judged there by
KL(final || lens) at the same token positions.

>>> texts = model_texts(s, 8, tokens=64)                               # doctest: +SKIP
>>> fit, held = split_texts(texts, 0.25)                                # doctest: +SKIP
>>> heldout_kl(s, held, {"logit": None})["logit"][:3]                # doctest: +SKIP
[105.2, 12.4, 13.9]
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from . import datasets
from .activations import extract_tokens, left_pad, validate_texts
from .translators import FittedLens, lens_path

if TYPE_CHECKING:
    from .session import Session

ProgressFn = Callable[[int, int], None]


def model_texts(session: Session, n_texts: int, *, tokens: int = 128, seed: int = 0,
                temperature: float = 0.8, batch: int = 32,
                progress: ProgressFn | None = None) -> list[str]:
    """``n_texts`` texts the model writes itself: each of the built-in prompts (cycled)
    continued by seeded sampling at ``temperature`` to about ``tokens`` tokens in all.
    Cached per model and settings; the same call gives the same texts."""
    settings = f"n{n_texts}-t{tokens}-s{seed}-T{temperature:g}"
    path = lens_path(session, "texts").with_name(f"texts-{settings}.json")
    if path.is_file():
        try:
            texts = json.loads(path.read_text("utf-8"))
            if isinstance(texts, list) and len(texts) == n_texts:
                return validate_texts(texts)
        except (OSError, ValueError):
            pass  # regenerate over a damaged cache entry
    prompts = datasets.load("prompts").texts
    chosen = [prompts[i % len(prompts)] for i in range(n_texts)]
    gen = torch.Generator().manual_seed(seed)
    texts: list[str] = []
    for start in range(0, n_texts, batch):
        texts += _continue(session, chosen[start:start + batch], tokens, temperature, gen,
                           progress, start, n_texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(texts), "utf-8")
    os.replace(tmp, path)
    return texts


def _continue(session, prompts, tokens, temperature, gen, progress, done, total) -> list[str]:
    """One left-padded batch of prompts continued to ``tokens`` tokens by sampling."""
    tok, backend = session.tokenizer, session.backend
    seqs = [tok(p)["input_ids"] for p in prompts]
    new = max(1, tokens - max(len(s) for s in seqs))
    ids, mask, pos = left_pad(seqs, tok.pad_token_id or 0, backend.device)
    out = torch.empty(len(seqs), 0, dtype=torch.long)
    cache = None
    with session.lock, session.without_edits():
        for step in range(new):
            logits, cache = backend.batch_next_logits(ids, mask, pos, cache)
            probs = torch.softmax(logits.cpu() / max(temperature, 1e-6), -1)
            nxt = torch.multinomial(probs, 1, generator=gen)
            out = torch.cat([out, nxt], 1)
            ids, pos = nxt.to(backend.device), pos[:, -1:] + 1
            mask = torch.cat([mask, torch.ones_like(ids)], 1)
            if progress is not None:
                progress(done * new + (step + 1) * len(seqs), total * new)
    eos = tok.eos_token_id
    texts = []
    for p, row in zip(prompts, out.tolist()):
        row = row[:row.index(eos)] if eos in row else row
        texts.append(p + tok.decode(row, skip_special_tokens=True))
    return texts


def split_texts(texts: Sequence[str], heldout: float | Sequence[str], *, seed: int = 0,
                ) -> tuple[list[str], list[str]]:
    """(fit, held-out) texts: ``heldout`` is a fraction of ``texts`` (at least one text,
    chosen by ``seed``) or the held-out texts themselves."""
    texts = validate_texts(texts)
    if not isinstance(heldout, numbers.Real):
        return texts, validate_texts(heldout)
    if not 0 < heldout < 1:
        raise ValueError(f"heldout={heldout}: a fraction between 0 and 1, or a list of texts")
    if len(texts) < 2:
        raise ValueError("a fit needs at least 2 texts (one is held out to judge it)")
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed)).tolist()
    n_held = min(len(texts) - 1, max(1, round(heldout * len(texts))))
    held = set(order[:n_held])
    return ([t for i, t in enumerate(texts) if i not in held],
            [t for i, t in enumerate(texts) if i in held])


def heldout_kl(session: Session, texts: Sequence[str],
               lenses: Mapping[str, FittedLens | None], *, skip: int = 16,
               rows_per_call: int = 8, progress: ProgressFn | None = None,
               ) -> dict[str, list[float]]:
    """Mean KL(final || lens) in nats per hidden state ``0..n-1`` over the tokens at positions
    ``>= skip`` of ``texts`` (all but the first of a shorter text), for each named lens
    (None = the logit lens): one forward per text, each lens's layers in one head call per
    ``rows_per_call`` rows.

    >>> heldout_kl(s, held, {"tuned": fitted, "logit": None})["logit"][:2]  # doctest: +SKIP
    """
    n, backend = session.n_blocks, session.backend
    sites = lens_sites(session)
    totals = {name: torch.zeros(n, dtype=torch.float64) for name in lenses}
    count = 0
    texts = validate_texts(texts)
    for i, text in enumerate(texts):
        with session.without_edits(), torch.inference_mode():
            values, _ = extract_tokens(backend, session.tokenizer, text, sites,
                                       max_tokens=session.context_length)
            h = values[:, _first_row(values.shape[1], skip):]
            for start in range(0, h.shape[1], rows_per_call):
                sl = slice(start, start + rows_per_call)
                final = torch.log_softmax(backend.logits_at(h[n, sl], sites[-1]), -1)
                for name, fitted in lenses.items():
                    rows = [fitted.apply(h[x, sl], x) if fitted is not None else h[x, sl]
                            for x in range(n)]
                    logp = torch.log_softmax(backend.logits_at(torch.cat(rows), sites[-1]), -1)
                    kl = (final.exp() * (final - logp.view(n, *final.shape))).sum(-1)
                    totals[name] += kl.clamp_min(0).double().sum(1).cpu()
        count += h.shape[1]
        if progress is not None:
            progress(i + 1, len(texts))
    return {name: [round(float(x), 5) for x in total / max(count, 1)]
            for name, total in totals.items()}


def lens_sites(session: Session) -> tuple:
    """What a lens fit reads: hidden states ``0..n-1`` and the last block's output (before
    the final norm), where every fitted lens maps to."""
    n = session.n_blocks
    return tuple(session.site(x) for x in [*range(n), f"blocks.{n - 1}.resid_post"])


def _first_row(n_tokens: int, skip: int) -> int:
    return skip if n_tokens > skip else min(1, n_tokens - 1)


def heldout_rows(session: Session, texts: Sequence[str], skip: int) -> int:
    """Token positions :func:`heldout_kl` averages over."""
    lengths = [len(session.tokenizer(t)["input_ids"]) for t in texts]
    return sum(n - _first_row(n, skip) for n in lengths)


PERMILLE = 1000


def texts_for_fit(session: Session, texts: Sequence[str] | None, heldout, *, n_texts: int,
                  tokens: int, seed: int, progress: ProgressFn | None,
                  ) -> tuple[list[str], list[str]]:
    """(fit, held-out) texts of a fit: ``texts``, or ``n_texts`` the model writes itself."""
    if texts is None:
        texts = model_texts(session, n_texts, tokens=tokens, seed=seed, progress=progress)
    return split_texts(texts, heldout, seed=seed)


def finish_fit(session: Session, kind: str, weight: torch.Tensor, bias: torch.Tensor,
               held: Sequence[str], *, skip: int, facts: dict, save: bool,
               progress: ProgressFn | None) -> FittedLens:
    """The fitted lens with its held-out KL (and the logit lens's) in ``meta``; saved to the
    model's cache entry when ``save`` (only now, when everything has worked)."""
    layers = tuple(range(session.n_blocks))
    bare = FittedLens(kind, session.ref, layers, weight.float(), bias.float())
    kl = heldout_kl(session, held, {kind: bare, "logit": None}, skip=skip, progress=progress)
    meta = {**facts, "heldout_texts": len(held),
            "heldout_tokens": heldout_rows(session, held, skip), "heldout_kl": kl}
    fitted = FittedLens(kind, session.ref, layers, bare.weight, bare.bias, meta)
    if save:
        fitted.save()
    return fitted


def stage(progress: ProgressFn | None, lo: int, hi: int) -> ProgressFn | None:
    """``progress`` of one stage of a fit, mapped onto ``lo..hi`` of 1000 (permille)."""
    if progress is None:
        return None

    def report(done: int, total: int) -> None:
        progress(lo + (hi - lo) * min(done, total) // max(total, 1), PERMILLE)

    return report


__all__ = ["PERMILLE", "heldout_kl", "heldout_rows", "model_texts", "split_texts", "stage"]
