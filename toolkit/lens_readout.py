"""A direction in words: the tokens it promotes and suppresses when read through a lens.

The read-out adds ``alpha`` typical norms of the direction to reference hidden states at its
layer (the built-in sentiment and truth texts' last tokens, the same states steering's alpha
is measured on), sends both the edited and the original states through the lens, and averages
the change in each token's log-probability. Beside it stands the null that says how big such
changes are for *any* direction: the same read-out of ``n_random`` random unit directions at
the same layer and strength.

>>> r = read_out(session, direction, k=10)                    # doctest: +SKIP
>>> r.summary()                                               # doctest: +SKIP
"sentiment@14 through the logit lens at layer 14 promotes ' great' (+0.41 nats) ..."
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .checks import as_float, as_int
from .geometry import residual_vector
from .lenses import lens_logits
from .model_ref import FromModel, ModelRef
from .numbers import fmt, fmt_p, fmt_signed
from .tokens import readable_token

if TYPE_CHECKING:
    from .directions import Direction
    from .session import Session

REFERENCE_ROWS = 64  # reference states averaged over (evenly spaced through the set)


@dataclass(frozen=True, eq=False)
class LensReadOut(FromModel):
    """What ``direction`` says through ``lens`` at ``layer``.

    ``promoted``/``suppressed``: ``k`` (token, mean change in log-probability in nats) pairs,
    largest change first, with their token ids in ``promoted_ids``/``suppressed_ids``;
    ``random_top`` ``[n_random]`` the largest mean change any token got from each random
    direction (the null of ``promoted[0]``); ``p_value`` the share of random directions whose
    top change is at least the direction's, with the +1 correction.
    """

    source: ModelRef | None
    direction: str
    layer: int
    lens: str
    alpha: float
    promoted: tuple[tuple[str, float], ...]
    suppressed: tuple[tuple[str, float], ...]
    promoted_ids: tuple[int, ...]
    suppressed_ids: tuple[int, ...]
    random_top: torch.Tensor
    p_value: float

    @property
    def null_high(self) -> float:
        """95th percentile of the random directions' top change (nats)."""
        return float(torch.quantile(self.random_top, 0.95))

    def rows(self) -> list[dict]:
        """One dict per listed token: direction, layer, lens, alpha, sign, rank, token,
        change (nats), null_high (the random directions' 95th percentile top change)."""
        common = {"direction": self.direction, "layer": self.layer, "lens": self.lens,
                  "alpha": self.alpha, "null_high": self.null_high}
        return [{**common, "sign": sign, "rank": rank, "token": token, "change": change}
                for sign, listed in (("promoted", self.promoted), ("suppressed", self.suppressed))
                for rank, (token, change) in enumerate(listed, 1)]

    def summary(self) -> str:
        """One line: the top tokens each way beside the random-direction null."""
        def words(listed):
            return ", ".join(f"{t!r} ({fmt_signed(c)})" for t, c in listed[:3])

        top = self.promoted[0][1]
        verdict = ("beyond" if top > self.null_high else "within") + " what random directions do"
        return (f"{self.direction} through the {self.lens} lens at layer {self.layer} (alpha "
                f"{fmt(self.alpha)}) promotes {words(self.promoted)} and suppresses "
                f"{words(self.suppressed)}; its top change {fmt_signed(top)} nats is {verdict} "
                f"({len(self.random_top)} random directions: 95% below "
                f"{fmt_signed(self.null_high)}, {fmt_p(self.p_value)}).")


def read_out(session: Session, direction: Direction, *, lens: str = "logit",
             layer: int | None = None, k: int = 10, alpha: float = 0.5, n_random: int = 32,
             seed: int = 0, progress=None) -> LensReadOut:
    """The ``k`` tokens ``direction`` promotes and suppresses most through ``lens`` at its
    layer (or ``layer``), beside ``n_random`` random directions at the same strength.

    ``alpha`` is in typical hidden-state norms at that layer, as in steering: 0.5 adds half
    a typical stream's length. Changes are mean log-probability changes in nats over the
    reference states; the session's steering is not applied. ``progress(done, total)``
    follows the reference texts' reading (the first read-out at a layer).

    >>> read_out(s, s.directions["sentiment@14"], k=5).promoted      # doctest: +SKIP
    ((' great', 0.41), ...)
    """
    layer = session.check_layers([direction.reading_layer(layer)])[0]
    k = as_int(k, "k", minimum=1, maximum=session.backend.unembedding.shape[0] // 2)
    n_random = as_int(n_random, "n_random", minimum=1)
    alpha = as_float(alpha, "alpha")
    if alpha == 0:
        raise ValueError("alpha=0 adds nothing: pass a strength such as 0.5 (typical norms)")
    geometry = session.geometry
    with session.without_edits():
        rows = geometry.reference_rows(layer, progress)
    rows = rows[torch.linspace(0, len(rows) - 1, min(REFERENCE_ROWS, len(rows))).long()]
    step = alpha * geometry.typical_norm(layer)
    unit = residual_vector(session, direction).float().cpu()
    generator = torch.Generator().manual_seed(int(seed))
    randoms = torch.randn(n_random, session.width, generator=generator)
    randoms = randoms / randoms.norm(dim=-1, keepdim=True)
    with session.lock, torch.inference_mode():
        base = torch.log_softmax(lens_logits(session, rows, layer, lens), dim=-1)
        change = _mean_change(session, rows, base, unit, step, layer, lens)
        random_top = torch.stack([_mean_change(session, rows, base, v, step, layer, lens).max()
                                  for v in randoms])
    up, down = torch.topk(change, k), torch.topk(-change, k)
    tok = session.tokenizer

    def named(ids, values, sign):
        return tuple((readable_token(tok, int(i)), sign * float(v))
                     for i, v in zip(ids, values, strict=True))

    top = float(up.values[0])
    return LensReadOut(
        source=session.ref, direction=direction.name, layer=layer, lens=lens, alpha=alpha,
        promoted=named(up.indices, up.values, 1), suppressed=named(down.indices, down.values, -1),
        promoted_ids=tuple(up.indices.tolist()), suppressed_ids=tuple(down.indices.tolist()),
        random_top=random_top, p_value=(int((random_top >= top).sum()) + 1) / (n_random + 1))


def _mean_change(session, rows, base, unit, step, layer, lens) -> torch.Tensor:
    """Mean over ``rows`` of the change in log-probabilities when ``step * unit`` is added."""
    moved = torch.log_softmax(lens_logits(session, rows + step * unit, layer, lens), dim=-1)
    return (moved - base).mean(0)


__all__ = ["LensReadOut", "read_out"]
