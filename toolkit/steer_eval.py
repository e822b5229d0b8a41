"""Measure steering by what the generated text says, beside its fluency cost.

Next-token log-odds can move while the generated text does not. Here each continuation is
scored by a :class:`TextJudge` (a linear probe reading the text at a good layer, fitted on
labelled data held out from the steering direction's) and by its perplexity under the
*unsteered* model; every alpha is compared with alpha = 0 on the same prompts and seed.

>>> build, held_out = datasets.load("sentiment").split()                      # doctest: +SKIP
>>> judge = fit_judge(s, held_out)                                            # doctest: +SKIP
>>> d = direction_from(s, build, layer=10)                                    # doctest: +SKIP
>>> effect = steering_effect(s, d, ["I think the movie was"], judge=judge)    # doctest: +SKIP
>>> effect.summary()                                                          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .directions import Direction
from .probes import probe_curve
from .steering import Steer, check_prompt

if TYPE_CHECKING:
    from .datasets import LabelledTexts
    from .session import Session


def direction_from(session: Session, data: LabelledTexts, layer: int,
                   name: str | None = None) -> Direction:
    """Mean-difference direction (positive minus negative, last token) of labelled texts."""
    positive = next((c for c in data.classes if c in ("positive", "true")), data.classes[0])
    labels = np.array(data.labels, dtype=object)
    texts = np.array(data.texts, dtype=object)
    pos = session.activations(list(texts[labels == positive]), layers=[layer])
    neg = session.activations(list(texts[labels != positive]), layers=[layer])
    return Direction.mean_difference(pos, neg, layer, name=name or f"{data.name}@{layer}")


@dataclass(frozen=True, eq=False)
class TextJudge:
    """A probe that reads what a text says: ``score(texts)`` is P(``positive``) per text."""

    layer: int
    weights: torch.Tensor   # [D] in raw activation space
    bias: float
    positive: str
    negative: str
    heldout_accuracy: float  # cross-validated accuracy at ``layer`` on the data it was fitted on
    p_value: float           # max-over-layers permutation p of that curve
    at: str = "mean"
    source: str = ""

    def score(self, session: Session, texts: Sequence[str]) -> np.ndarray:
        """P(positive) of each text, read at ``at`` (mean over tokens by default)."""
        texts = [t if t.strip() else "." for t in texts]
        acts = session.activations(list(texts), layers=[self.layer], at=self.at)
        logit = acts.layer(self.layer).float() @ self.weights.to(acts.values.device) + self.bias
        return torch.sigmoid(logit).cpu().numpy()

    def __repr__(self) -> str:
        return (f"TextJudge({self.positive} vs {self.negative} at layer {self.layer}, held-out "
                f"accuracy {self.heldout_accuracy:.2f}, p {self.p_value:.2g}, {self.source})")


def fit_judge(session: Session, data: LabelledTexts, layer: int | None = None, *,
              at: str = "mean", seed: int = 0) -> TextJudge:
    """Fit a two-class text judge on ``data`` (grouped folds), at ``layer`` or, by default,
    the best layer of the middle third of the model (early layers read words, not what the
    text says: at the embeddings a bag of words already separates minimal pairs).

    Fit it on data held out from the steering direction's (``LabelledTexts.split``), so the
    judge does not simply re-read the direction it is judging.
    """
    classes = data.classes
    if len(classes) != 2:
        raise ValueError(f"a judge needs two classes, got {len(classes)}: {classes}")
    acts = session.activations(list(data.texts), at=at)
    curve = probe_curve(acts, list(data.labels), groups=data.groups, seed=seed)
    if layer is None:
        n = session.n_blocks
        middle = [i for i, lay in enumerate(curve.layers) if n // 3 <= lay <= 2 * n // 3]
        layer = curve.layers[max(middle or range(len(curve.layers)),
                                 key=lambda i: curve.scores[i])]
    i = curve.index(layer)
    positive = next((c for c in classes if c in ("positive", "true")), classes[1])
    negative = next(c for c in classes if c != positive)
    sign = 1.0 if str(curve.classes[1]) == str(positive) else -1.0
    return TextJudge(layer, sign * curve.weights[i, 0], float(sign * curve.bias[i, 0]), positive,
                     negative, float(curve.scores[i]), float(curve.p_values[i]), at,
                     f"{data.name}, {len(data)} texts")


def perplexity(session: Session, prompt_ids: Sequence[int], new_ids: Sequence[int]) -> float:
    """Perplexity of ``new_ids`` after ``prompt_ids`` under the unsteered model."""
    if not new_ids:
        return float("nan")
    ids = torch.tensor([list(prompt_ids) + list(new_ids)], device=session.device)
    with session.without_edits():
        logits = session.backend.run(ids).logits[0].float()
    start = len(prompt_ids)
    logp = torch.log_softmax(logits[start - 1:-1], -1)
    target = ids[0, start:]
    nll = -logp.gather(1, target[:, None]).mean()
    return float(torch.exp(nll))


@dataclass(frozen=True, eq=False)
class SteeringEffect:
    """Judge scores and perplexities of steered continuations ``[alphas, prompts]``."""

    direction: str
    layer: int
    alphas: np.ndarray
    prompts: tuple[str, ...]
    texts: tuple[tuple[str, ...], ...]
    scores: np.ndarray       # P(positive) from the judge
    perplexity: np.ndarray   # under the unsteered model
    judge: str
    seed: int
    n_permutations: int = 2000

    @property
    def baseline_index(self) -> int:
        return int(np.flatnonzero(self.alphas == 0)[0])

    @property
    def effect(self) -> np.ndarray:
        """Mean judge score minus the unsteered one (same prompts, same seed), per alpha."""
        return self.scores.mean(1) - self.scores[self.baseline_index].mean()

    @property
    def p_values(self) -> np.ndarray:
        """Paired sign-flip permutation p (two-sided) of each alpha's effect; with few prompts
        it cannot go below 2 / 2^prompts (0.031 for 6 prompts)."""
        diffs = self.scores - self.scores[self.baseline_index]
        return np.array([_sign_flip_p(d, self.n_permutations, self.seed) for d in diffs])

    @property
    def fluency_cost(self) -> np.ndarray:
        """Median perplexity ratio to the unsteered continuation, per alpha."""
        base = self.perplexity[self.baseline_index]
        return np.nanmedian(self.perplexity / base, axis=1)

    def rows(self) -> list[dict]:
        return [{"alpha": float(a), "effect": float(e), "p_value": float(p),
                 "mean_score": float(s), "median_perplexity": float(np.nanmedian(pp)),
                 "perplexity_ratio": float(c), "direction": self.direction, "layer": self.layer,
                 "judge": self.judge}
                for a, e, p, s, pp, c in zip(self.alphas, self.effect, self.p_values,
                                             self.scores.mean(1), self.perplexity,
                                             self.fluency_cost)]

    def summary(self, level: float = 0.05) -> str:
        parts = []
        for a, e, p, c in zip(self.alphas, self.effect, self.p_values, self.fluency_cost):
            if a == 0:
                continue
            verdict = "moves the text" if p < level else "no detectable change"
            parts.append(f"alpha {a:+g}: {e:+.2f} ({verdict}, p = {p:.2g}), perplexity x{c:.2f}")
        base = self.scores[self.baseline_index].mean()
        return (f"'{self.direction}' at layer {self.layer}, judged by {self.judge}; unsteered "
                f"score {base:.2f} over {len(self.prompts)} prompts. " + "; ".join(parts) + ".")


def _sign_flip_p(d: np.ndarray, n: int, seed: int) -> float:
    """Two-sided paired sign-flip p of mean(d); exact (all 2^m patterns) up to 2^12."""
    d = np.asarray(d, dtype=np.float64)
    if np.allclose(d, 0):
        return 1.0
    m = len(d)
    if 2 ** m <= max(n, 4096):
        signs = 1.0 - 2.0 * ((np.arange(2 ** m)[:, None] >> np.arange(m)) & 1)
        extra = 0
    else:
        signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n, m))
        extra = 1
    null = np.abs((signs * d).mean(1))
    observed = abs(d.mean()) * (1 - 1e-9)
    return float((extra + (null >= observed).sum()) / (extra + len(signs)))


def steering_effect(session: Session, direction: Direction, prompts: Sequence[str],
                    alphas: Sequence[float] = (-0.5, -0.25, 0.0, 0.25, 0.5), *,
                    judge: TextJudge, layer: int | None = None, max_new_tokens: int = 24,
                    seed: int = 0, temperature: float = 0.0, apply_to: str = "all",
                    progress=None) -> SteeringEffect:
    """Generate from each prompt at each alpha (alpha 0 added if missing), then judge the
    continuations and measure their perplexity under the unsteered model."""
    prompts = list(prompts)
    if not prompts:
        raise ValueError("no prompts: pass a few prompts to generate from")
    for p in prompts:
        check_prompt(p)
    alphas = np.array(sorted(set(float(a) for a in alphas) | {0.0}))
    tok = session.tokenizer
    texts, ppl = [], []
    total, done = len(alphas) * len(prompts), 0
    for a in alphas:
        row_t, row_p = [], []
        steer = Steer(direction, layer=layer, alpha=float(a), apply_to=apply_to)
        for prompt in prompts:
            tokens = list(session.stream(prompt, max_new_tokens=max_new_tokens, seed=seed,
                                         temperature=temperature, steer=steer))
            row_t.append("".join(t.text for t in tokens))
            row_p.append(perplexity(session, tok(prompt)["input_ids"], [t.id for t in tokens]))
            done += 1
            if progress is not None:
                progress(done, total)
        texts.append(tuple(row_t))
        ppl.append(row_p)
    scores = np.stack([judge.score(session, row) for row in texts])
    resolved = Steer(direction, layer=layer).layer
    return SteeringEffect(direction.name, resolved, alphas, tuple(prompts), tuple(texts), scores,
                          np.array(ppl), repr(judge), seed)
