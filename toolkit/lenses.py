"""The logit lens: what the output head would say from the stream at every layer.

Each token's hidden state at each layer goes through the final norm and the LM head
(:meth:`Backend.logits_at <reprlab.backends.LocalBackend.logits_at>`); of each distribution
only its top-k tokens, entropy, KL from the model's own distribution and the probability and
rank of a target token are kept, in chunks of rows so the full ``[layers, tokens, vocab]``
tensor never exists.

The tuned and Jacobian lenses (``lens="tuned"``/``"jacobian"``, or a
:class:`~reprlab.translators.FittedLens`) first translate the stream at each layer into the
last block's output space with the fitted affine map, then apply the final norm and the head.
At hidden state ``n`` (after the final norm) every lens is the model's own distribution.

>>> r = lens(session, ["The capital of France is"], positions=[-1], targets=["Paris"])
... # doctest: +SKIP
>>> r.summary()                                                     # doctest: +SKIP
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .activations import validate_texts
from .checks import as_int
from .model_ref import FromModel, ModelRef
from .numbers import fmt
from .store import parse_bytes
from .tokens import readable_token, word_token_ids
from .translators import FittedLens, check_fits, load_lens

if TYPE_CHECKING:
    from .session import Session

LENSES = ("logit", "tuned", "jacobian")
MAX_BYTES = 256 * 2**20
_BUFFERS = 4  # float32 [rows, vocab] tensors alive at once per chunk (final, logits, log-p, p)


@dataclass(frozen=True, eq=False)
class LensResult(FromModel):
    """The lens at ``layers`` x rows, where rows are the (text, position) pairs in order.

    ``top_ids``/``top_probs`` ``[layers, rows, k]`` (most probable first) with their token
    strings ``top_tokens[l][r]``; ``entropy`` and ``kl_to_final`` (KL(final || layer)) in
    nats ``[layers, rows]``; ``final_top_ids`` ``[rows]`` is the model's own top-1 token (the
    last hidden state's, whether or not it is in ``layers``). ``target_prob`` and
    ``target_rank`` (1 = top) ``[layers, rows]`` when targets were given.
    """

    source: ModelRef | None
    layers: tuple[int, ...]
    texts: tuple[str, ...]
    tokens: tuple[tuple[str, ...], ...]
    positions: tuple[tuple[int, ...], ...]
    text_index: torch.Tensor
    position: torch.Tensor
    top_ids: torch.Tensor
    top_probs: torch.Tensor
    top_tokens: tuple[tuple[tuple[str, ...], ...], ...]
    entropy: torch.Tensor
    kl_to_final: torch.Tensor
    final_top_ids: torch.Tensor
    targets: tuple[str, ...] | None = None
    target_prob: torch.Tensor | None = None
    target_rank: torch.Tensor | None = None
    lens: str = "logit"

    @property
    def n_rows(self) -> int:
        return len(self.text_index)

    def row_token(self, row: int) -> str:
        """The token of a row (the one whose next token the lens predicts)."""
        i, pos = int(self.text_index[row]), int(self.position[row])
        return self.tokens[i][self.positions[i].index(pos)]

    def commits_at(self) -> list[int | None]:
        """Per row, the first layer from which the top-1 token is the model's own top-1 at
        every later layer of ``layers`` (None when the last layer does not agree either).

        >>> r.commits_at()                       # doctest: +SKIP
        [3, None, 1]
        """
        agree = self.top_ids[:, :, 0] == self.final_top_ids[None]  # [layers, rows]
        settled = agree.flip(0).cumprod(0).flip(0).bool()  # agrees here and at every later one
        out: list[int | None] = []
        for r in range(self.n_rows):
            hits = torch.nonzero(settled[:, r]).flatten()
            out.append(self.layers[int(hits[0])] if len(hits) else None)
        return out

    def rows(self) -> list[dict]:
        """One dict per layer x row: layer, text_index, position, token, top_token, top_prob,
        entropy, kl_to_final, target, target_prob, target_rank (None without targets)."""
        out = []
        for li, layer in enumerate(self.layers):
            for r in range(self.n_rows):
                i = int(self.text_index[r])
                has = self.target_prob is not None
                out.append({
                    "layer": layer, "text_index": i, "position": int(self.position[r]),
                    "token": self.row_token(r), "top_token": self.top_tokens[li][r][0],
                    "top_prob": float(self.top_probs[li, r, 0]),
                    "entropy": float(self.entropy[li, r]),
                    "kl_to_final": float(self.kl_to_final[li, r]),
                    "target": self.targets[i] if has else None,
                    "target_prob": float(self.target_prob[li, r]) if has else None,
                    "target_rank": int(self.target_rank[li, r]) if has else None,
                })
        return out

    def summary(self) -> str:
        """One line: where the model's own top token settles, entropy and KL from the first
        layer to the last, and the target's probability."""
        commits = self.commits_at()
        settled = sorted(c for c in commits if c is not None)
        where = (f"the model's top token is settled from layer {settled[len(settled) // 2]} "
                 f"(median)" if settled else "the model's top token is never settled")
        if len(settled) < len(commits):
            where += f", not at all in {len(commits) - len(settled)} of {len(commits)} rows"
        first, last = self.layers[0], self.layers[-1]
        line = (f"{self.lens} lens over {self.n_rows} positions of {len(self.texts)} texts at "
                f"{len(self.layers)} layers: {where}; entropy {fmt(self.entropy[0].mean())} "
                f"nats at layer {first}, {fmt(self.entropy[-1].mean())} at {last}; KL to final "
                f"{fmt(self.kl_to_final[0].mean())} -> {fmt(self.kl_to_final[-1].mean())} nats")
        if self.target_prob is not None:
            line += (f"; target probability {fmt(self.target_prob[0].mean())} -> "
                     f"{fmt(self.target_prob[-1].mean())}")
        return line + "."

    def __repr__(self) -> str:
        return (f"LensResult({self.lens}, {len(self.layers)} layers x {self.n_rows} rows, "
                f"k={self.top_ids.shape[-1]}, model={self.model!r})")


def lens(session: Session, texts: Sequence[str], *, lens: str | FittedLens = "logit",
         layers: int | Sequence[int] | None = None, positions: Sequence[int] | None = None,
         targets: Sequence[str] | None = None, k: int = 10, batch_size: int = 256,
         progress: Callable[[int, int], None] | None = None,
         max_bytes: int | str = MAX_BYTES) -> LensResult:
    """The lens (logit by default) of every token of ``texts`` (or the token indices ``positions``,
    negative allowed, of each text) at ``layers`` (None = all hidden states).

    ``targets``: one token string per text, whose probability and rank are kept (a target
    must be one token, by the rule of :func:`~reprlab.tokens.word_token_ids`). At most
    ``batch_size`` rows go through the head at once, fewer when ``max_bytes`` (bytes or
    "64MB") would be exceeded by the distributions held meanwhile. ``progress(done, total)``
    counts texts read, then chunks.

    ``lens``: ``"logit"``, ``"tuned"`` or ``"jacobian"`` (the fit cached for this model, see
    :func:`~reprlab.fit_tuned_lens`), or a :class:`~reprlab.translators.FittedLens`.

    >>> lens(s, ["The capital of France is"], positions=[-1], targets=["Paris"], k=5)
    ... # doctest: +SKIP
    >>> lens(s, ["The capital of France is"], lens="tuned")         # doctest: +SKIP
    """
    fitted = _fitted(session, lens)
    kind = fitted.kind if fitted is not None else "logit"
    texts = validate_texts(texts)
    layers = session.check_layers(layers)
    vocab = session.backend.unembedding.shape[0]
    k = as_int(k, "k", minimum=1, maximum=vocab)
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    budget = parse_bytes(max_bytes)
    kept = _kept_positions(session, texts, positions)
    target_ids = _target_ids(session.tokenizer, targets, len(texts))
    read = tuple(sorted({*layers, session.n_blocks}))
    chunk = max(1, min(batch_size, budget // (_BUFFERS * 4 * vocab)))
    n_rows = sum(len(keep) for keep in kept)
    step_rows = max(1, chunk // (sum(layer != session.n_blocks for layer in layers) + 1))
    total_steps = len(texts) + -(-n_rows // step_rows)
    hidden, tokens = _read_rows(session, texts, kept, read, progress, total_steps)
    text_index = torch.tensor([i for i, keep in enumerate(kept) for _ in keep])
    position = torch.tensor([p for keep in kept for p in keep])
    per_row_target = None if target_ids is None else target_ids[text_index]
    parts = _lens_chunks(session, hidden, read, layers, per_row_target, k, step_rows,
                         progress, len(texts), total_steps, fitted)
    names = _token_names(session.tokenizer, parts["top_ids"])
    return LensResult(
        source=session.ref, layers=layers, texts=tuple(texts), tokens=tuple(tokens),
        positions=tuple(tuple(keep) for keep in kept), text_index=text_index, position=position,
        top_ids=parts["top_ids"], top_probs=parts["top_probs"], top_tokens=names,
        entropy=parts["entropy"], kl_to_final=parts["kl"], final_top_ids=parts["final_top"],
        targets=None if targets is None else tuple(targets),
        target_prob=parts.get("target_prob"), target_rank=parts.get("target_rank"), lens=kind)


def _read_rows(session, texts, kept, read, progress, total) -> tuple[torch.Tensor, list]:
    """The streams ``[read layers, rows, width]`` at the kept positions, with their tokens.

    One position per text is read in batched forwards that keep only that row (a few-shot
    prompt's last token: no per-token activations of the whole prompt are cached); otherwise
    each text's every token is read once (cached) and the kept ones taken.
    """
    if all(len(keep) == 1 for keep in kept):
        def report(done, n):
            if progress is not None:
                progress(round(done / max(n, 1) * len(texts)), total)

        acts = session.activations(texts, layers=read, at=[keep[0] for keep in kept],
                                   progress=report, copy=False)
        return acts.values.float(), [(token,) for token in acts.tokens]
    hidden, tokens = [], []
    for i, (text, keep) in enumerate(zip(texts, kept, strict=True)):
        acts = session.token_activations(text, read, copy=False)
        hidden.append(acts.values[:, keep].float())
        tokens.append(tuple(acts.tokens[p] for p in keep))
        if progress is not None:
            progress(i + 1, total)
    return torch.cat(hidden, dim=1), tokens


def _fitted(session, which) -> FittedLens | None:
    """The fitted lens ``which`` names (None for the logit lens), checked against the model."""
    if isinstance(which, FittedLens):
        check_fits(which, session)
        return which
    if not isinstance(which, str) or which not in LENSES:
        raise ValueError(f"lens={which!r:.60}: one of {', '.join(map(repr, LENSES))} or a "
                         "FittedLens")
    return None if which == "logit" else load_lens(session, which)


def lens_logits(session: Session, hidden: torch.Tensor, layer: int,
                lens: str | FittedLens = "logit") -> torch.Tensor:
    """Float32 logits ``[rows, vocab]`` that ``lens`` reads from ``hidden`` ``[rows, width]``,
    the stream at hidden state ``layer``.

    >>> lens_logits(s, s.read(["Hi"], [12])[0], 12).shape        # doctest: +SKIP
    """
    fitted = _fitted(session, lens)
    if fitted is None or layer == session.n_blocks:  # after the final norm every lens is the head
        return session.backend.logits_at(hidden, session.site(layer))
    return session.backend.logits_at(fitted.apply(hidden, layer), _head_site(session, fitted,
                                                                             layer))


def _head_site(session, fitted: FittedLens | None, layer: int):
    """Where the head reads a lens's rows of hidden state ``layer`` (before the final norm):
    the layer's own site for the logit lens, the last block's output for a fitted lens (its
    map lands there). Either way the final norm is applied."""
    return session.site(f"blocks.{session.n_blocks - 1}.resid_post") if fitted is not None \
        else session.site(layer)


def _lens_chunks(session, hidden, read, layers, targets, k, step_rows, progress, done,
                 total, fitted=None) -> dict:
    """Top-k, entropy, KL to final and target prob/rank, ``step_rows`` rows at a time.

    Each step sends those rows at every lens layer through the head in one call (the head reads
    its whole ``[vocab, width]`` matrix per call, so a call per layer would read it that many
    times): ``step_rows x (layers + 1)`` distributions are in flight, within the budget.
    A ``fitted`` lens translates each layer's rows before they are stacked.
    """
    backend, last = session.backend, session.n_blocks
    rows = hidden.shape[1]
    before = [layer for layer in layers if layer != last]  # these all get final norm + head
    where = _head_site(session, fitted, (before or [0])[0])

    def rows_at(layer, sl):
        rows = hidden[read.index(layer), sl]
        return fitted.apply(rows, layer) if fitted is not None else rows
    out: dict[str, list] = {}
    with session.lock, torch.inference_mode():
        for step, start in enumerate(range(0, rows, step_rows), 1):
            sl = slice(start, start + step_rows)
            final_logp = torch.log_softmax(backend.logits_at(hidden[read.index(last), sl], last),
                                           dim=-1)
            n = final_logp.shape[0]
            logp = {last: final_logp}
            if before:  # one head call for every layer before the final norm
                stacked = torch.cat([rows_at(layer, sl) for layer in before])
                for layer, part in zip(before, torch.log_softmax(
                        backend.logits_at(stacked, where), dim=-1).split(n)):
                    logp[layer] = part
            final_p = final_logp.exp()
            got: dict[str, list] = {}
            for layer in layers:
                lp = logp[layer]
                top = torch.topk(lp, k, dim=-1)
                got.setdefault("top_ids", []).append(top.indices.cpu())
                got.setdefault("top_probs", []).append(top.values.exp().cpu())
                got.setdefault("entropy", []).append(-(lp.exp() * lp).sum(-1).cpu())
                got.setdefault("kl", []).append(
                    (final_p * (final_logp - lp)).sum(-1).clamp_min(0).cpu())
                if targets is not None:
                    t_logp = lp.gather(-1, targets[sl].to(lp.device)[:, None])
                    got.setdefault("target_prob", []).append(t_logp[:, 0].exp().cpu())
                    got.setdefault("target_rank", []).append(((lp > t_logp).sum(-1) + 1).cpu())
            for key, per_layer in got.items():
                out.setdefault(key, []).append(torch.stack(per_layer))  # [layers, rows, ...]
            out.setdefault("final_top", []).append(final_logp.argmax(-1).cpu())
            if progress is not None:
                progress(done + step, total)
    return {key: torch.cat(parts, dim=1 if key != "final_top" else 0)
            for key, parts in out.items()}


def _kept_positions(session, texts: list[str], positions) -> list[list[int]]:
    """Per text, the token indices kept (non-negative), checked against its length."""
    lengths = [len(session.tokenizer(t)["input_ids"]) for t in texts]
    if positions is None:
        return [list(range(n)) for n in lengths]
    if isinstance(positions, numbers.Integral) and not isinstance(positions, bool):
        positions = [positions]
    positions = list(positions)
    if not positions:
        raise ValueError("positions is empty: pass None for every token or a list of indices")
    for p in positions:
        if isinstance(p, bool) or not isinstance(p, numbers.Integral):
            raise TypeError(f"positions must be token indices such as [0, -1], got "
                            f"{type(p).__name__} {p!r:.40}")
    kept = []
    for i, n in enumerate(lengths):
        for p in positions:
            if not -n <= p < n:
                raise ValueError(f"position {p} is past texts[{i}], which has {n} tokens "
                                 f"(positions 0..{n - 1}, or -{n}..-1 from the end)")
        kept.append([int(p) % n for p in positions])
    return kept


def _target_ids(tokenizer, targets, n_texts: int) -> torch.Tensor | None:
    """The one token of each target; a target of several tokens is refused."""
    if targets is None:
        return None
    if isinstance(targets, str):
        raise TypeError("targets must be a list with one token string per text, not one "
                        "string: wrap it as [target]")
    targets = list(targets)
    if len(targets) != n_texts:
        raise ValueError(f"{len(targets)} targets for {n_texts} texts: pass one per text")
    ids = []
    for i, target in enumerate(targets):
        if not isinstance(target, str) or not target.strip():
            raise ValueError(f"targets[{i}] is {target!r}: every target is a non-empty string")
        (found,) = word_token_ids(tokenizer, [target])
        if found is None:
            pieces = min((tokenizer(form, add_special_tokens=False)["input_ids"]
                          for form in (" " + target.strip(), target.strip())), key=len)
            names = [readable_token(tokenizer, j) for j in pieces]
            raise ValueError(
                f"target {target!r} is {len(pieces)} tokens {names}, not one: the lens scores "
                f"one next token; pass the first piece, {names[0]!r}, to score it")
        ids.append(found)
    return torch.tensor(ids)


def _token_names(tokenizer, ids: torch.Tensor) -> tuple:
    """Readable strings of ``ids`` ``[layers, rows, k]`` as nested tuples."""
    names: dict[int, str] = {}
    for j in ids.unique().tolist():
        names[j] = readable_token(tokenizer, j)
    return tuple(tuple(tuple(names[j] for j in row) for row in layer)
                 for layer in ids.tolist())


__all__ = ["LENSES", "LensResult", "lens", "lens_logits"]
