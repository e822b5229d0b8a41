"""Names for the string choices the kernel accepts (``Literal`` aliases, one meaning each).

>>> from reprlab.types import Inner
>>> from typing import get_args
>>> get_args(Inner)
('euclidean', 'standardized', 'causal', 'whitened')
"""

from __future__ import annotations

from typing import Literal, get_args

Inner = Literal["euclidean", "standardized", "causal", "whitened"]
"""Inner product on representation space (see :mod:`reprlab.geometry`): "causal" is the
unembedding-based one (exact only at the last layer), "whitened" is estimated at the layer read."""

INNER_PRODUCTS: tuple[str, ...] = get_args(Inner)


def check_inner(inner: Inner) -> Inner:
    """``inner`` if it names an inner product, else a ValueError listing them."""
    if inner not in INNER_PRODUCTS:
        choices = ", ".join(INNER_PRODUCTS)
        raise ValueError(f"unknown inner product {inner!r}; choose from {choices}")
    return inner

Mode = Literal["add", "ablate"]
"""What a :class:`~reprlab.steering.Steer` does: add ``alpha`` along a direction, or remove it."""

ApplyTo = Literal["all", "new"]
"""Which tokens a steer edits: every token, or only the last prompt token and new tokens."""

Method = Literal["mean_difference", "probe", "pca_of_differences"]
"""How :meth:`~reprlab.directions.Direction.from_dataset` builds a direction."""

CircularMethod = Literal["pca", "umap", "circle_probe"]
"""How :func:`~reprlab.circular.circular_analysis` places examples in 2-D."""

Task = Literal["auto", "classification", "regression"]
"""What a probe predicts: classes (logistic) or numbers (ridge); "auto" decides from labels."""

__all__ = ["INNER_PRODUCTS", "ApplyTo", "CircularMethod", "Inner", "Method", "Mode", "Task",
           "check_inner"]
