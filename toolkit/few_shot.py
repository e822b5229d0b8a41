"""Few-shot prompts with correct, flipped or random demonstration labels, and how well a lens
reads the query's label at every layer (Halawi et al. 2023, "Overthinking the Truth").

Demonstrations and queries come from disjoint groups of a built-in labelled set (a minimal
pair never teaches its own twin). "flipped" gives every demonstration the other label (the
binary case of the paper's permuted labels); "random" draws each demonstration's label by a
coin, the control of the same format.

>>> prompts = few_shot_prompts("sentiment", "flipped", n_queries=60)     # doctest: +SKIP
>>> acc = label_accuracy(session, prompts)                              # doctest: +SKIP
>>> acc.summary()                                                       # doctest: +SKIP
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import datasets
from .checks import as_int, as_seed
from .lenses import lens
from .model_ref import FromModel, ModelRef
from .numbers import fmt_score

if TYPE_CHECKING:
    from .session import Session

CONDITIONS = ("correct", "flipped", "random")
#: task -> (template of one example, {label: the token that says it})
TASKS = {
    "sentiment": ("Review: {}\nSentiment:", {"negative": " negative", "positive": " positive"}),
    "truth": ("Statement: {}\nAnswer:", {"false": " false", "true": " true"}),
}


@dataclass(frozen=True)
class FewShotPrompts:
    """Prompts ending in a query's template; ``labels`` the queries' true labels."""

    task: str
    condition: str
    texts: tuple[str, ...]
    labels: tuple[str, ...]
    label_tokens: dict
    shots: int
    seed: int


def few_shot_prompts(task: str, condition: str, *, n_queries: int = 60, shots: int = 6,
                     seed: int = 0) -> FewShotPrompts:
    """``n_queries`` prompts of ``shots`` demonstrations each, labelled per ``condition``.

    The same ``seed`` gives the same queries and demonstrations under every condition, so the
    conditions differ only in the demonstrations' labels.
    """
    if task not in TASKS:
        raise ValueError(f"task {task!r}: choose one of {', '.join(TASKS)}")
    if condition not in CONDITIONS:
        raise ValueError(f"condition {condition!r}: choose one of {', '.join(CONDITIONS)}")
    n_queries = as_int(n_queries, "n_queries", minimum=1)
    shots = as_int(shots, "shots", minimum=1)
    seed = as_seed(seed)
    data = datasets.load(task)
    template, words = TASKS[task]
    groups = sorted(set(data.groups))
    rng = random.Random(seed)
    rng.shuffle(groups)
    demo_groups = set(groups[: len(groups) // 2])
    rows = list(zip(data.texts, data.labels, data.groups, strict=True))
    demos = [(t, y) for t, y, g in rows if g in demo_groups]
    queries = [(t, y) for t, y, g in rows if g not in demo_groups]
    rng.shuffle(queries)
    queries = queries[:n_queries]
    names = sorted(words)
    labels = random.Random(seed + 1)  # the coin of "random", the same draws for every condition
    texts = []
    for text, _ in queries:
        parts = []
        for demo, label in rng.sample(demos, shots):
            coin = labels.choice(names)
            shown = {"correct": label, "random": coin,
                     "flipped": names[1 - names.index(label)]}[condition]
            parts.append(template.format(demo) + words[shown])
        texts.append("\n\n".join([*parts, template.format(text)]))
    return FewShotPrompts(task, condition, tuple(texts), tuple(y for _, y in queries),
                          dict(words), shots, seed)


@dataclass(frozen=True, eq=False)
class LabelAccuracy(FromModel):
    """Per layer, how often the lens ranks the query's true label token above the other one.

    ``correct`` ``[layers, queries]`` booleans; ``accuracy`` ``[layers]`` with a bootstrap 95%
    interval ``low``/``high``; ``label_mass`` the mean probability the lens puts on the two
    label tokens together (small: the layer is not answering in labels at all).
    """

    source: ModelRef | None
    task: str
    condition: str
    lens: str
    layers: tuple[int, ...]
    correct: torch.Tensor
    label_mass: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor

    @property
    def accuracy(self) -> torch.Tensor:
        return self.correct.float().mean(1)

    def rows(self) -> list[dict]:
        return [{"task": self.task, "condition": self.condition, "lens": self.lens,
                 "layer": layer, "accuracy": float(self.accuracy[i]),
                 "low": float(self.low[i]), "high": float(self.high[i]),
                 "label_mass": float(self.label_mass[i])}
                for i, layer in enumerate(self.layers)]

    def summary(self) -> str:
        best = int(self.accuracy.argmax())
        return (f"{self.task}, {self.condition} demonstrations ({self.lens} lens, "
                f"{self.correct.shape[1]} queries): accuracy {fmt_score(self.accuracy[-1])} "
                f"[{fmt_score(self.low[-1])}, {fmt_score(self.high[-1])}] at the output, best "
                f"{fmt_score(self.accuracy[best])} at layer {self.layers[best]}.")


def label_accuracy(session: Session, prompts: FewShotPrompts, *, lens_kind: str = "logit",
                   n_boot: int = 1000, progress: Callable[[int, int], None] | None = None
                   ) -> LabelAccuracy:
    """The lens's label prediction for each prompt's query at every layer: the label whose
    token is more probable at the prompt's last position."""
    names = sorted(prompts.label_tokens)
    probs = []
    for name in names:  # the second pass reuses the cached activations
        r = lens(session, list(prompts.texts), lens=lens_kind, positions=[-1], k=1,
                 targets=[prompts.label_tokens[name]] * len(prompts.texts), progress=progress)
        probs.append(r.target_prob)
    probs = torch.stack(probs)  # [labels, layers, queries]
    truth = torch.tensor([names.index(y) for y in prompts.labels])
    correct = probs.argmax(0) == truth[None]
    low, high = bootstrap_interval(correct.float().numpy(), n_boot, prompts.seed)
    return LabelAccuracy(session.ref, prompts.task, prompts.condition, lens_kind, r.layers,
                         correct, probs.sum(0).mean(1), torch.tensor(low), torch.tensor(high))


def bootstrap_interval(values: np.ndarray, n_boot: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean over the last axis (queries resampled)."""
    rng = np.random.default_rng(seed)
    n = values.shape[-1]
    picks = rng.integers(0, n, size=(n_boot, n))
    means = values[..., picks].mean(-1)  # [..., n_boot]
    tail = (1 - level) / 2
    return np.quantile(means, tail, axis=-1), np.quantile(means, 1 - tail, axis=-1)


def parting_layer(a: LabelAccuracy, b: LabelAccuracy, n_boot: int = 1000,
                  seed: int = 0) -> int | None:
    """The first layer from which ``a`` is more accurate than ``b`` at every later layer,
    each by a paired bootstrap 95% interval above zero (same queries; None if never)."""
    if a.correct.shape != b.correct.shape:
        raise ValueError("the two accuracies come from different queries or layers")
    diff = (a.correct.float() - b.correct.float()).numpy()
    low, _ = bootstrap_interval(diff, n_boot, seed)
    above = low > 0
    for i in range(len(above)):
        if above[i:].all():
            return a.layers[i]
    return None


__all__ = ["CONDITIONS", "TASKS", "FewShotPrompts", "LabelAccuracy", "bootstrap_interval",
           "few_shot_prompts", "label_accuracy", "parting_layer"]
