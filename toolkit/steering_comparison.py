"""Baseline versus steered generation from the same prompt and seed, token by token.

>>> c = compare_steering(s, "I think the movie was", Steer(d, alpha=0.5), max_new_tokens=20)
... # doctest: +SKIP
>>> c.n_changed, c.steered_text, c.shift.rose[:3]                   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from .steering import LogitShift, Steer, Token, logit_shift, token_diff

if TYPE_CHECKING:
    from .session import Session


@dataclass(frozen=True, eq=False)
class SteeringComparison:
    """The unsteered baseline and the steered text (same prompt, seed and sampling), which
    steered tokens differ from the baseline, and the logit shift of the first new token."""

    prompt: str
    steer: Steer
    baseline: tuple[Token, ...]
    steered: tuple[Token, ...]
    changed: tuple[bool, ...]       # per steered token: differs from the aligned baseline
    shift: LogitShift
    options: dict = field(default_factory=dict)  # max_new_tokens, seed, temperature, top_p

    @property
    def baseline_text(self) -> str:
        return "".join(t.text for t in self.baseline)

    @property
    def steered_text(self) -> str:
        return "".join(t.text for t in self.steered)

    @property
    def n_changed(self) -> int:
        return sum(self.changed)

    def summary(self) -> str:
        return (f"{self.steer!r}: {self.n_changed} of {len(self.steered)} tokens differ from "
                "the baseline.")

    def rows(self) -> list[dict]:
        """The baseline and steered texts, then the first new token's biggest risers and
        fallers (one dict per row, for CSV)."""
        s = self.steer
        setting = {"direction": s.direction.name, "layer": s.layer, "alpha": s.alpha,
                   "mode": s.mode, "prompt": self.prompt}
        out = [{**setting, "kind": "baseline", "text": self.baseline_text},
               {**setting, "kind": "steered", "text": self.steered_text,
                "changed_tokens": self.n_changed}]
        for kind, items in (("rose", self.shift.rose), ("fell", self.shift.fell)):
            out += [{**setting, "kind": kind, "text": tok, "p_before": b, "p_after": a}
                    for tok, b, a in items]
        return out


def compare_steering(session: Session, prompt: str, steer: Steer, *,
                     max_new_tokens: int = 40, seed: int = 0, temperature: float = 0.0,
                     top_p: float = 1.0, k: int = 6,
                     baseline: Sequence[Token] | None = None,
                     before: torch.Tensor | None = None,
                     on_token: Callable[[list[Token], list[bool]], None] | None = None,
                     ) -> SteeringComparison:
    """Generate ``prompt`` unsteered and steered with the same seed and compare them.

    ``baseline``: tokens of an earlier unsteered run with the same settings, and ``before``:
    the unsteered next-token distribution of this prompt (``comparison.shift.before``), both
    reused rather than recomputed. ``on_token(tokens, changed)`` sees the steered text grow;
    an exception it raises stops generation (the hooks are removed).
    """
    options = dict(max_new_tokens=max_new_tokens, seed=seed, temperature=temperature,
                   top_p=top_p)
    if baseline is None:
        baseline = list(session.stream(prompt, **options))
    base_ids = [t.id for t in baseline]
    shift = logit_shift(session, prompt, steer, k=k, before=before)
    tokens: list[Token] = []
    with contextlib.closing(session.stream(prompt, steer=steer, **options)) as it:
        for token in it:
            tokens.append(token)
            if on_token is not None:
                on_token(tokens, token_diff(base_ids, [t.id for t in tokens]))
    changed = token_diff(base_ids, [t.id for t in tokens])
    return SteeringComparison(prompt, steer, tuple(baseline), tuple(tokens), tuple(changed),
                              shift, options)
