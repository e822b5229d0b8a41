"""Steering: add a scaled direction to the residual stream (or ablate it) while generating.

>>> d = Direction.from_dataset(s, "sentiment", layer=10)                      # doctest: +SKIP
>>> s.generate("I think the movie was", steer=Steer(d, alpha=0.5))           # doctest: +SKIP
>>> logit_shift(s, "I think the movie was", Steer(d, alpha=0.5)).rose[:3]    # doctest: +SKIP

``alpha`` is in units of the typical hidden-state norm at the steered layer (the median norm
of reference activations, see :meth:`Geometry.typical_norm`), so ``alpha=0.5`` adds half a
typical activation whatever the layer or model. ``Steer.unit(session)`` reports it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, get_args

import numpy as np
import torch

if TYPE_CHECKING:
    from .session import Session

from .activations import check_length
from .checks import as_float, as_int, as_seed
from .directions import Direction
from .geometry import residual_vector
from .sites import Site
from .tokens import readable_token, word_token_ids
from .types import ApplyTo, Mode

MODES = get_args(Mode)
MAX_ALPHA = 1000.0  # in typical norms: beyond this a steer only produces overflow
APPLY_TO = get_args(ApplyTo)


@dataclass(frozen=True)
class Steer:
    """One intervention: ``mode="add"`` adds ``alpha`` typical norms along ``direction`` at
    hidden state ``layer`` (or at a named ``site``); ``mode="ablate"`` projects the direction
    out. ``apply_to="new"`` leaves the prompt alone (only the last prompt token and generated
    tokens are steered).

    ``layer`` is sugar for the site of that hidden state, the same stream a read at ``layer``
    sees (the last one is after the final norm). ``site`` names any site, such as
    ``"blocks.29.resid_post"`` (the last block's output, before the norm, where llama.cpp
    edits). With neither, the direction's own place. After construction ``steer.layer`` is
    an int unless the steer is at a site with no hidden-state index.

    >>> Steer(d, alpha=0.25)                     # doctest: +SKIP
    Steer('sentiment@10', layer 10, alpha=+0.25, apply_to=all)
    """

    direction: Direction
    layer: int | None = None
    alpha: float = 0.0
    mode: Mode = "add"
    apply_to: ApplyTo = "all"
    site: str | None = None

    def __post_init__(self):
        if not isinstance(self.direction, Direction):
            raise TypeError(f"Steer needs a Direction, got {type(self.direction).__name__}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be 'add' or 'ablate', got {self.mode!r}")
        if self.apply_to not in APPLY_TO:
            raise ValueError(f"apply_to must be 'all' or 'new', got {self.apply_to!r}")
        if isinstance(self.site, Site):
            object.__setattr__(self, "site", self.site.name)
        spec = self.direction.reading_site(self.layer, self.site)
        if isinstance(spec, str):
            object.__setattr__(self, "site", spec)
            object.__setattr__(self, "layer", None)
        else:
            object.__setattr__(self, "layer", spec)
        alpha = as_float(self.alpha, "alpha", example=0.5)
        if abs(alpha) > MAX_ALPHA:
            raise ValueError(f"alpha={alpha:g} is not a sensible strength: alpha counts typical "
                             f"hidden-state norms, so values from -{MAX_ALPHA:g} to {MAX_ALPHA:g} "
                             "(usually below 10) cover every useful steer")
        object.__setattr__(self, "alpha", alpha)

    def where(self, session: Session) -> Site:
        """The site this steer edits."""
        return session.site(self.site if self.site is not None else self.layer)

    def unit(self, session: Session) -> float:
        """The length of ``alpha = 1``: the median norm of the reference texts' stream at the
        site this steer edits (:meth:`Geometry.typical_norm`)."""
        return session.geometry.typical_norm(self.where(session))

    def __repr__(self) -> str:
        what = f"alpha={self.alpha:+g}" if self.mode == "add" else "ablate"
        name = self.direction.name
        place = f"layer {self.layer}" if self.site is None else f"site {self.site}"
        return f"Steer({name!r}, {place}, {what}, apply_to={self.apply_to})"


def steering_edits(session: Session,
                   steers: Steer | Sequence[Steer] | None) -> dict[Site, Callable]:
    """Edit functions by site for :meth:`Session.hooks`, several steers per site composed
    in order."""
    if steers is None:
        return {}
    steers = [steers] if isinstance(steers, Steer) else list(steers)
    by_site: dict[Site, list] = {}
    for steer in steers:
        if not isinstance(steer, Steer):
            raise TypeError(f"steer must be a Steer or a list of them, got {steer!r}")
        where = steer.where(session)
        vector = residual_vector(session, steer.direction)
        scale = steer.alpha * steer.unit(session) if steer.mode == "add" else 0.0
        by_site.setdefault(where, []).append((steer, vector, scale))

    def make(items):
        def edit(hidden: torch.Tensor) -> torch.Tensor:
            out = hidden.clone()
            # A multi-token pass is the prompt: with apply_to="new" only its last token.
            for steer, v, scale in items:
                part = out[:, -1:] if steer.apply_to == "new" and out.shape[1] > 1 else out
                v = v.to(part.dtype)
                if steer.mode == "add":
                    part += scale * v
                else:
                    part -= (part @ v)[..., None] * v
            return out

        return edit

    return {where: make(items) for where, items in by_site.items()}


# -- generation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """One generated token: its id and the text it added."""

    id: int
    text: str


def check_prompt(prompt) -> None:
    """Raise a clear error unless ``prompt`` is a non-blank string."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError("the prompt is empty: type some text for the model to continue")


def stream(session: Session, prompt: str, *, max_new_tokens: int = 40, seed: int = 0,
           temperature: float = 0.0, top_p: float = 1.0, steer=None,
           should_stop: Callable[[], bool] | None = None) -> Iterator[Token]:
    """Yield new tokens one by one (greedy, or seeded sampling), with ``steer`` applied.

    Closing the iterator or ``should_stop()`` returning True ends generation; the steering
    hooks are attached only while each token is computed, so an abandoned iterator holds
    neither hooks nor the session lock. With ``steer=None`` (or ``alpha=0``) and the same seed
    the tokens are exactly those of plain generation. A character spread over several tokens
    is yielded whole, with the token that completes it (the others yield ""); one left
    incomplete when generation stops is dropped rather than shown as "�".
    """
    check_prompt(prompt)
    max_new_tokens = as_int(max_new_tokens, "max_new_tokens", minimum=1)
    temperature = as_float(temperature, "temperature", minimum=0.0, example=0.7)
    if 0 < temperature < 1e-6:
        raise ValueError(f"temperature {temperature:g} is too small to sample with: pass 0 for "
                         "greedy decoding or a value such as 0.7")
    top_p = as_float(top_p, "top_p", example=0.9)
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    seed = as_seed(seed)
    ids = session.tokenizer(prompt)["input_ids"]
    context = session.context_length
    if context is not None:
        if len(ids) >= context:
            raise ValueError(f"the prompt has {len(ids)} tokens but this model reads at most "
                             f"{context}: shorten the prompt to leave room for new tokens")
        if len(ids) + max_new_tokens > context:
            warnings.warn(f"max_new_tokens={max_new_tokens} would run past the model's context "
                          f"of {context} tokens: generating {context - len(ids)} at most",
                          stacklevel=3)
            max_new_tokens = context - len(ids)
    edits = steering_edits(session, steer)
    return _tokens(session, ids, edits, max_new_tokens, seed, temperature, top_p, should_stop)


def _tokens(session, ids, edits, max_new_tokens, seed, temperature, top_p, should_stop):
    tok = session.tokenizer
    generator = torch.Generator(device=session.device).manual_seed(seed)
    eos = tok.eos_token_id
    cache, step_ids, new, text = None, torch.tensor([ids], device=session.device), [], ""
    held = 0  # tokens held back because they end in an incomplete character
    for step in range(max_new_tokens):
        if should_stop is not None and should_stop():
            return
        # Hooks (and the session lock) are held only while this token is computed, so a
        # consumer that abandons the iterator leaves nothing attached, and code run between
        # tokens sees the unsteered model.
        with session.hooks(edits=edits):
            logits, cache = session.backend.next_logits(step_ids, cache)
        next_id = _pick(logits, temperature, top_p, generator)
        if next_id == eos:
            return
        new.append(next_id)
        step_ids = torch.tensor([[next_id]], device=session.device)
        full = tok.decode(new, skip_special_tokens=True)
        # Part of a multi-byte character (at most 3 more bytes): wait for the rest. Bytes that
        # stay invalid are shown after that; an incomplete character at the end is dropped.
        if full.endswith("\ufffd") and held < 3:
            if step < max_new_tokens - 1:
                held += 1
                yield Token(next_id, "")
                continue
            full = text + full[len(text):].rstrip("\ufffd")
        held = 0
        yield Token(next_id, full[len(text):])
        text = full


def _pick(logits: torch.Tensor, temperature: float, top_p: float, generator) -> int:
    if temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(0) - sorted_p < top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
        probs /= probs.sum()
    return int(torch.multinomial(probs, 1, generator=generator))


# -- logit shift and alpha sweep -------------------------------------------------------------------


@dataclass(frozen=True)
class LogitShift:
    """Next-token distribution before and after steering: the biggest risers and fallers."""

    prompt: str
    rose: list[tuple[str, float, float]]   # (token, p_before, p_after)
    fell: list[tuple[str, float, float]]
    kl: float                               # KL(after || before), nats
    before: torch.Tensor = None             # full distributions [vocab]
    after: torch.Tensor = None

    def total_probability(self, token_ids: Sequence[int]) -> tuple[float, float]:
        """Total probability of ``token_ids`` before and after."""
        idx = torch.as_tensor(list(token_ids))
        return float(self.before[idx].sum()), float(self.after[idx].sum())


def next_token_probs(session: Session, prompt: str,
                     steer: Steer | Sequence[Steer] | None = None) -> torch.Tensor:
    """Probability of each next token after ``prompt`` ``[vocab]``, optionally steered."""
    check_prompt(prompt)
    ids = session.tokenizer(prompt)["input_ids"]
    check_length(len(ids), session.context_length, "the prompt")
    ids = torch.tensor([ids], device=session.device)
    with session.hooks(edits=steering_edits(session, steer)):
        logits, _ = session.backend.next_logits(ids)
    return torch.softmax(logits, -1).cpu()


def logit_shift(session: Session, prompt: str, steer: Steer | Sequence[Steer],
                k: int = 10, *, before: torch.Tensor | None = None) -> LogitShift:
    """How ``steer`` changes the next-token distribution after ``prompt``.

    ``before``: the unsteered distribution of this prompt from an earlier call
    (``shift.before``), reused instead of recomputed.
    """
    if before is None:
        before = next_token_probs(session, prompt)
    after = next_token_probs(session, prompt, steer)
    delta = after - before
    tok = session.tokenizer

    def rows(order):
        return [(readable_token(tok, int(i)), float(before[i]), float(after[i])) for i in order]

    kl = float((after * (after.clamp_min(1e-30).log() - before.clamp_min(1e-30).log())).sum())
    return LogitShift(prompt, rows(delta.topk(k).indices), rows((-delta).topk(k).indices), kl,
                      before, after)


@dataclass(frozen=True)
class AlphaSweep:
    """A behaviour score at each alpha (mean over prompts); ``metric`` says what was scored."""

    alphas: np.ndarray
    scores: np.ndarray
    metric: str
    unit: float


def word_ids(session: Session, words: Sequence[str]) -> list[int]:
    """Token id of each word (:func:`~reprlab.tokens.word_token_ids`; a word of several
    tokens counts by its first)."""
    return word_token_ids(session.tokenizer, words, several="first")


def alpha_sweep(session: Session, prompts: str | Sequence[str], direction: Direction,
                alphas: Sequence[float], *, layer: int | None = None,
                positive: Sequence[str] = (), negative: Sequence[str] = (),
                mode: Mode = "add", site: str | None = None) -> AlphaSweep:
    """Score steering strength: ``log P(positive words) - log P(negative words)`` for the next
    token, averaged over ``prompts``, at each ``alpha``."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not positive or not negative:
        raise ValueError("pass positive= and negative= words to score the next token")
    pos, neg = word_ids(session, positive), word_ids(session, negative)
    scores = []
    for alpha in alphas:
        steer = Steer(direction, layer, float(alpha), mode, site=site)
        values = []
        for prompt in prompts:
            p = next_token_probs(session, prompt, steer)
            values.append(float(p[pos].sum().log() - p[neg].sum().log()))
        scores.append(np.mean(values))
    unit = Steer(direction, layer, 0.0, site=site).unit(session)
    return AlphaSweep(np.asarray(alphas, float), np.array(scores), "log P(pos) - log P(neg)", unit)


def token_diff(baseline: Sequence[int], steered: Sequence[int]) -> list[bool]:
    """For each steered token, whether it differs from the baseline (difflib alignment)."""
    import difflib

    changed = [True] * len(steered)
    matcher = difflib.SequenceMatcher(a=list(baseline), b=list(steered), autojunk=False)
    for block in matcher.get_matching_blocks():
        for j in range(block.b, block.b + block.size):
            changed[j] = False
    return changed
