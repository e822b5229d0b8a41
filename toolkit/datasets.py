"""Built-in concept data: labelled texts, cyclic item sets and counterfactual word pairs.

Word pairs (``load("pairs")``): every word of every pair is one in-sentence token (" word") of
the embedded model's tokenizer (SmolLM2), so no pair is skipped there. Split-half consistency
on the embedded model (cosine between the directions of two random halves of a set's pairs,
mean of 50 splits; :func:`reprlab.pair_stats.pair_consistency`), beside pairs of random
vocabulary words (mean, 99% quantile):

=================  =====  ======  =========
set                pairs  causal  euclidean
=================  =====  ======  =========
male_female           31    0.81       0.80
singular_plural       50    0.77       0.83
country_capital       44    0.88       0.90
lower_upper           50    0.81       0.89
present_past          70    0.90       0.91
adj_comparative       52    0.95       0.97
adj_adverb            75    0.84       0.91
random pairs          25  0.01 (0.09)  0.00 (0.38)
=================  =====  ======  =========

The former english_french set is gone: of 145 candidate pairs only 28 French words are single
tokens of this English-centric tokenizer, and most of those are English homographs (chat,
pain, main, lit, route, plus, comment), so it measured English words, not French. Averaging
several tokens per word is not Park et al.'s construction and has no justification we could
check, so word pairs stay single-token.

>>> from reprlab import datasets
>>> datasets.names()
['days', 'hours', 'months', 'pairs', 'prompts', 'sentiment', 'truth']
>>> data = datasets.load("sentiment")
>>> len(data.texts) == len(data.labels)
True
>>> datasets.load("pairs")["male_female"].pairs[0]
('king', 'queen')
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with one label each (e.g. positive/negative).

    ``groups`` ties related examples (a statement and its false twin): pass it to
    ``probe_curve(..., groups=data.groups)`` so cross-validation never splits them.
    """

    name: str
    description: str
    texts: tuple[str, ...]
    labels: tuple[str, ...]
    groups: tuple[str, ...] | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.labels))

    def split(self, fraction: float = 0.5, seed: int = 0) -> tuple[LabelledTexts, LabelledTexts]:
        """Two disjoint parts (``fraction`` of the groups in the first), never splitting a
        group: e.g. build a direction on one and judge or test on the other.

        >>> a, b = load("sentiment").split()
        >>> len(a) + len(b) == len(load("sentiment")) and not set(a.texts) & set(b.texts)
        True
        """
        import numpy as np

        if not 0 < fraction < 1:
            raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
        groups = self.groups or tuple(str(i) for i in range(len(self)))
        unique = list(dict.fromkeys(groups))
        order = np.random.default_rng(seed).permutation(len(unique))
        first = {unique[i] for i in order[: max(1, round(fraction * len(unique)))]}

        def part(keep: bool, suffix: str) -> LabelledTexts:
            idx = [i for i, g in enumerate(groups) if (g in first) == keep]
            return LabelledTexts(f"{self.name}-{suffix}", self.description,
                                 tuple(self.texts[i] for i in idx),
                                 tuple(self.labels[i] for i in idx),
                                 tuple(groups[i] for i in idx) if self.groups else None)

        return part(True, "a"), part(False, "b")

    @classmethod
    def from_frame(cls, frame, *, text: str = "text", label: str = "label",
                   group: str | None = "group", name: str = "your data") -> LabelledTexts:
        """Texts and labels from the ``text`` and ``label`` columns of a pandas DataFrame, and
        groups from ``group`` when that column exists.

        >>> LabelledTexts.from_frame(pd.DataFrame({"text": ["hi", "bye"], "label": [1, 0]}))
        ... # doctest: +SKIP
        """
        columns = getattr(frame, "columns", None)
        if columns is None:
            raise TypeError(f"from_frame needs a pandas DataFrame, got {type(frame).__name__}")
        missing = [c for c in (text, label) if c not in columns]
        if missing:
            raise ValueError(f"the DataFrame needs {text!r} and {label!r} columns; missing "
                             f"{missing} (it has {list(columns)})")
        groups = tuple(frame[group].tolist()) if group is not None and group in columns else None
        return cls(name, f"{len(frame)} rows of a DataFrame", tuple(frame[text].tolist()),
                   tuple(frame[label].tolist()), groups)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Cycle:
    """Items in cyclic order (days, months), each placed in several carrier templates."""

    name: str
    description: str
    items: tuple[str, ...]
    templates: tuple[str, ...]

    def examples(self) -> list[tuple[str, str]]:
        """``(text, item)`` for every template and item, item-major order."""
        return [(t.format(item), item) for item in self.items for t in self.templates]


@dataclass(frozen=True)
class ConceptPairs:
    """Counterfactual word pairs that differ in one concept (e.g. male -> female)."""

    name: str
    description: str
    pairs: tuple[tuple[str, str], ...]

    def __len__(self) -> int:
        return len(self.pairs)


@dataclass(frozen=True)
class PromptSet:
    """Prompts to generate from, each with a kind (review, diary, news, ...): ``load("prompts")``
    holds neutral prompts for judging steering on text nobody tuned it on."""

    name: str
    description: str
    texts: tuple[str, ...]
    kinds: tuple[str, ...]

    def __post_init__(self):
        if len(self.texts) != len(self.kinds):
            raise ValueError(f"{len(self.texts)} prompts but {len(self.kinds)} kinds")

    def of_kind(self, kind: str) -> tuple[str, ...]:
        return tuple(t for t, k in zip(self.texts, self.kinds) if k == kind)

    def __len__(self) -> int:
        return len(self.texts)


Dataset = LabelledTexts | Cycle | PromptSet | dict[str, ConceptPairs]


def names() -> list[str]:
    """Names accepted by :func:`load`."""
    files = resources.files("reprlab") / "data"
    return sorted(p.name[: -len(".json")] for p in files.iterdir() if p.name.endswith(".json"))


@functools.cache
def _read(name: str) -> dict:
    """Parsed JSON of a built-in data file, read once per process (views reload on every move)."""
    return json.loads((resources.files("reprlab") / "data" / f"{name}.json").read_text("utf-8"))


def load(name: str) -> Dataset:
    """Load a built-in dataset by name; see :func:`names`."""
    available = names()
    if name not in available:
        raise KeyError(f"unknown dataset {name!r}; available: {', '.join(available)}")
    raw = _read(name)
    kind = raw["kind"]
    if kind == "labelled":
        groups = tuple(raw["groups"]) if "groups" in raw else None
        return LabelledTexts(
            name, raw["description"], tuple(raw["texts"]), tuple(raw["labels"]), groups
        )
    if kind == "cycle":
        return Cycle(name, raw["description"], tuple(raw["items"]), tuple(raw["templates"]))
    if kind == "prompts":
        return PromptSet(name, raw["description"], tuple(raw["texts"]), tuple(raw["kinds"]))
    if kind == "pairs":
        return {
            concept: ConceptPairs(concept, c["description"], tuple(tuple(p) for p in c["pairs"]))
            for concept, c in raw["concepts"].items()
        }
    raise ValueError(f"dataset file {name}.json has unknown kind {kind!r}")
