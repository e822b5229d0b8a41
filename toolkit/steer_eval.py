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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from .directions import Direction
from .numbers import fmt_p, fmt_score, fmt_signed
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
                f"accuracy {fmt_score(self.heldout_accuracy)}, {fmt_p(self.p_value)}, "
                f"{self.source})")


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
    kinds: tuple[str, ...] | None = None   # kind of each prompt (review, diary, ...)

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

    def intervals(self, level: float = 0.95, n_boot: int = 2000) -> np.ndarray:
        """``[alphas, 2]`` confidence interval of each alpha's effect: percentile bootstrap
        over prompts (the same prompts resampled for the steered and unsteered scores, so the
        pairing is kept), ``n_boot`` resamples seeded by ``seed``."""
        return _bootstrap_ci(self.scores - self.scores[self.baseline_index], level, n_boot,
                             self.seed)

    def rescored(self, scores, judge: str) -> SteeringEffect:
        """The same continuations scored by another judge (``scores[alphas, prompts]``, e.g.
        a sentiment lexicon's), so its effects, p-values and intervals are computed the same
        way."""
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != self.scores.shape:
            raise ValueError(f"scores must have shape {self.scores.shape} (alphas x prompts), "
                             f"got {scores.shape}")
        return replace(self, scores=scores, judge=judge)

    def by_kind(self, level: float = 0.95, n_boot: int = 2000) -> EffectTable:
        """Effect, interval and p of every alpha, over all prompts and per kind of prompt."""
        kinds = self.kinds or ("all",) * len(self.prompts)
        groups = {"all": np.arange(len(self.prompts))}
        if self.kinds:
            for k in dict.fromkeys(kinds):
                groups[k] = np.flatnonzero(np.asarray(kinds, dtype=object) == k)
        diffs = self.scores - self.scores[self.baseline_index]
        base = self.perplexity[self.baseline_index]
        rows = []
        for i, a in enumerate(self.alphas):
            if a == 0:
                continue
            for kind, idx in groups.items():
                d = diffs[i, idx]
                low, high = _bootstrap_ci(d[None], level, n_boot, self.seed)[0]
                rows.append({"alpha": float(a), "kind": kind, "prompts": len(idx),
                             "effect": float(d.mean()), "ci_low": float(low),
                             "ci_high": float(high),
                             "p_value": _sign_flip_p(d, self.n_permutations, self.seed),
                             "perplexity_ratio": float(np.nanmedian(
                                 self.perplexity[i, idx] / base[idx]))})
        return EffectTable(self.direction, self.layer, self.judge, level, tuple(rows))

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
            parts.append(f"alpha {a:+g}: {fmt_signed(e)} ({verdict}, {fmt_p(p)}), perplexity "
                         f"x{fmt_score(c)}")
        base = self.scores[self.baseline_index].mean()
        return (f"'{self.direction}' at layer {self.layer}, judged by {self.judge}; unsteered "
                f"score {fmt_score(base)} over {len(self.prompts)} prompts. "
                + "; ".join(parts) + ".")


@dataclass(frozen=True)
class EffectTable:
    """Steering effects with intervals, over all prompts (``kind == "all"``) and per kind."""

    direction: str
    layer: int
    judge: str
    level: float
    table: tuple[dict, ...]   # alpha, kind, prompts, effect, ci_low, ci_high, p_value, ...

    def rows(self) -> list[dict]:
        return [dict(r, direction=self.direction, layer=self.layer, judge=self.judge,
                     level=self.level) for r in self.table]

    def row(self, alpha: float, kind: str = "all") -> dict:
        for r in self.table:
            if r["alpha"] == alpha and r["kind"] == kind:
                return r
        raise KeyError(f"no row for alpha {alpha:g}, kind {kind!r}")

    def summary(self, level: float = 0.05) -> str:
        """One line per alpha and kind: effect [interval], p, and what it supports."""
        out = []
        for r in self.table:
            if r["ci_low"] > 0 and r["p_value"] < level:
                verdict = "more positive"
            elif r["ci_high"] < 0 and r["p_value"] < level:
                verdict = "more negative"
            else:
                verdict = "no detectable change"
            out.append(f"alpha {r['alpha']:+g} {r['kind']:>9s} ({r['prompts']:2d} prompts): "
                       f"{fmt_signed(r['effect'], 3)} [{fmt_signed(r['ci_low'], 3)}, "
                       f"{fmt_signed(r['ci_high'], 3)}], {fmt_p(r['p_value'])}: {verdict}")
        return "\n".join(out)


@dataclass(frozen=True)
class JudgeAgreement:
    """How two judges of the same continuations agree: per-text correlations and whether
    they reach the same verdict on each alpha."""

    judge: str
    other: str
    alphas: np.ndarray
    pearson: np.ndarray          # per alpha, over its prompts' texts
    spearman: np.ndarray
    pooled_pearson: float        # over every text of every alpha
    pooled_spearman: float
    effect: np.ndarray           # per alpha (0 excluded), under each judge
    other_effect: np.ndarray
    p_value: np.ndarray
    other_p_value: np.ndarray
    level: float = 0.05

    @property
    def same_verdict(self) -> np.ndarray:
        """Per steered alpha: both significant with the same sign, or both not significant."""
        sig, other = self.p_value < self.level, self.other_p_value < self.level
        same_sign = np.sign(self.effect) == np.sign(self.other_effect)
        return (sig == other) & (~sig | same_sign)

    def rows(self) -> list[dict]:
        steered = [i for i, a in enumerate(self.alphas) if a != 0]
        out = []
        for j, i in enumerate(steered):
            out.append({"alpha": float(self.alphas[i]), "pearson": float(self.pearson[i]),
                        "spearman": float(self.spearman[i]), "effect": float(self.effect[j]),
                        "p_value": float(self.p_value[j]),
                        "other_effect": float(self.other_effect[j]),
                        "other_p_value": float(self.other_p_value[j]),
                        "same_verdict": bool(self.same_verdict[j]), "judge": self.judge,
                        "other": self.other})
        return out

    def summary(self) -> str:
        n = int(self.same_verdict.sum())
        return (f"{self.judge} vs {self.other}: per-text Pearson "
                f"{fmt_score(self.pooled_pearson)}, Spearman {fmt_score(self.pooled_spearman)} "
                f"over every text (per alpha {fmt_score(np.nanmin(self.spearman))} to "
                f"{fmt_score(np.nanmax(self.spearman))}); same verdict "
                f"at p < {self.level:g} on {n} of {len(self.same_verdict)} steered alphas.")


def judge_agreement(effect: SteeringEffect, other: SteeringEffect,
                    level: float = 0.05) -> JudgeAgreement:
    """Compare two judges of the same continuations (``other = effect.rescored(...)``)."""
    if effect.texts != other.texts:
        raise ValueError("the two effects judge different continuations: score the same "
                         "texts (SteeringEffect.rescored)")
    a, b = effect.scores, other.scores
    steered = effect.alphas != 0
    return JudgeAgreement(
        _judge_name(effect.judge), other.judge, effect.alphas,
        np.array([_pearson(x, y) for x, y in zip(a, b)]),
        np.array([_pearson(_ranks(x), _ranks(y)) for x, y in zip(a, b)]),
        _pearson(a.ravel(), b.ravel()), _pearson(_ranks(a.ravel()), _ranks(b.ravel())),
        effect.effect[steered], other.effect[steered], effect.p_values[steered],
        other.p_values[steered], level)


def _judge_name(judge: str) -> str:
    return judge.split("(")[0] if judge.startswith("TextJudge") else judge


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (as scipy.stats.rankdata), for Spearman's rho."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    values, inverse = np.unique(x, return_inverse=True)
    sums = np.bincount(inverse, ranks)
    counts = np.bincount(inverse)
    return (sums / counts)[inverse]


def _pearson(x, y) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    x, y = x - x.mean(), y - y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else float("nan")


def _bootstrap_ci(diffs: np.ndarray, level: float, n_boot: int, seed: int) -> np.ndarray:
    """Percentile bootstrap interval of the mean of each row of ``diffs`` over its columns."""
    diffs = np.atleast_2d(np.asarray(diffs, dtype=np.float64))
    m = diffs.shape[1]
    idx = np.random.default_rng(seed).integers(0, m, size=(n_boot, m))
    means = diffs[:, idx].mean(-1)                      # [rows, n_boot]
    tail = (1 - level) / 2
    return np.stack([np.quantile(means, tail, axis=1), np.quantile(means, 1 - tail, axis=1)], 1)


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
                    kinds: Sequence[str] | None = None, progress=None) -> SteeringEffect:
    """Generate from each prompt at each alpha (alpha 0 added if missing), then judge the
    continuations and measure their perplexity under the unsteered model.

    ``prompts`` may be a :class:`~reprlab.datasets.PromptSet` (``datasets.load("prompts")``),
    whose kinds then label the prompts for :meth:`SteeringEffect.by_kind`; or pass ``kinds``.
    """
    if kinds is None:
        kinds = getattr(prompts, "kinds", None)
    prompts = list(getattr(prompts, "texts", prompts))
    if kinds is not None:
        kinds = tuple(str(k) for k in kinds)
        if len(kinds) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(kinds)} kinds: pass one kind "
                             "per prompt")
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
                          np.array(ppl), repr(judge), seed, kinds=kinds)
