"""Named places in the residual stream, where every read and edit of the model happens.

An integer layer is friendly until the one index where two places share it: hidden state ``n``
(``output_hidden_states`` numbering) is read *after* the final norm, while the last block's own
output comes *before* it. A :class:`Site` names the place, so a read and an edit of "layer n"
can never mean two different streams.

The sites of a model with ``n`` blocks, and the hidden-state index each one is:

==========================  ======================================  ============
site name                   what flows there                        hidden state
==========================  ======================================  ============
``embeddings``              input of block 0 (after any scaling)    0
``blocks.k.resid_post``     output of block k (k = 0 .. n-1)        k + 1, k < n-1
``final_norm``              output of the final norm (pairs with    n
                            the unembedding)
==========================  ======================================  ============

``blocks.k.resid_pre`` is accepted as a name and means ``blocks.(k-1).resid_post`` (or
``embeddings`` for k = 0). The output of the last block, before the final norm
(``blocks.{n-1}.resid_post``), has no hidden-state index: name it to use it.

llama.cpp control vectors and repeng number the same places by block: tensor ``direction.k``
is added to the output of block ``k``, so ``blocks.k.resid_post`` is llama.cpp block ``k``
(:func:`llama_cpp_block`); llama.cpp refuses ``k = 0``.

>>> site(12, n_blocks=30).name
'blocks.11.resid_post'
>>> site(30, n_blocks=30).name, site("blocks.29.resid_post", 30).hidden_state(30)
('final_norm', None)
>>> llama_cpp_block(site(12, 30), 30)
11
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass

EMBEDDINGS = "embeddings"
RESID_POST = "resid_post"
FINAL_NORM = "final_norm"
_NAME = re.compile(r"^blocks\.(\d+)\.(resid_pre|resid_post)$")


@dataclass(frozen=True, order=True)
class Site:
    """One place in the residual stream: ``depth`` orders sites along the forward pass
    (embeddings 0, output of block k at k + 1, the final norm last).

    Build one with :func:`site`; two sites that name the same stream are equal.
    """

    depth: int
    kind: str   # "embeddings" | "resid_post" | "final_norm"

    @property
    def block(self) -> int | None:
        """The block whose output this is (None for the embeddings and the final norm)."""
        return self.depth - 1 if self.kind == RESID_POST else None

    @property
    def name(self) -> str:
        if self.kind == RESID_POST:
            return f"blocks.{self.block}.{RESID_POST}"
        return self.kind

    def hidden_state(self, n_blocks: int) -> int | None:
        """This site's index in ``output_hidden_states`` numbering, or None (the last
        block's output before the final norm has none)."""
        if self.kind == EMBEDDINGS:
            return 0
        if self.kind == FINAL_NORM:
            return n_blocks
        return self.depth if self.depth < n_blocks else None

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"Site({self.name!r})"


def embeddings() -> Site:
    return Site(0, EMBEDDINGS)


def resid_post(block: int) -> Site:
    """The output of block ``block`` (0-based)."""
    return Site(int(block) + 1, RESID_POST)


def final_norm(n_blocks: int) -> Site:
    """The output of the final norm (the stream the unembedding reads)."""
    return Site(n_blocks + 1, FINAL_NORM)


def site(spec: Site | int | str, n_blocks: int) -> Site:
    """Resolve a site name, a :class:`Site` or a hidden-state index ``L`` (negative counts
    from the end) to the canonical :class:`Site` of a model with ``n_blocks`` blocks.

    >>> site("blocks.3.resid_pre", 30).name
    'blocks.2.resid_post'
    """
    if isinstance(spec, Site):
        if spec.kind == FINAL_NORM and spec.depth != n_blocks + 1:
            return final_norm(n_blocks)
        _check_block(spec.block, n_blocks, spec.name)
        return spec
    if isinstance(spec, numbers.Integral) and not isinstance(spec, bool):
        layer = int(spec)
        if not -(n_blocks + 1) <= layer <= n_blocks:
            raise ValueError(
                f"layer {layer} out of range: this model has hidden states 0..{n_blocks} "
                f"(0 = embeddings, {n_blocks} = after the final norm)")
        layer %= n_blocks + 1
        if layer == 0:
            return embeddings()
        return final_norm(n_blocks) if layer == n_blocks else resid_post(layer - 1)
    if isinstance(spec, str):
        name = spec.strip()
        if name in (EMBEDDINGS, "embed"):
            return embeddings()
        if name in (FINAL_NORM, "ln_final"):
            return final_norm(n_blocks)
        match = _NAME.match(name)
        if match:
            k, kind = int(match.group(1)), match.group(2)
            _check_block(k, n_blocks, name)
            if kind == RESID_POST:
                return resid_post(k)
            return embeddings() if k == 0 else resid_post(k - 1)
        raise ValueError(
            f"unknown site {spec!r}: use 'embeddings', 'blocks.K.resid_post' (output of block "
            f"K, 0..{n_blocks - 1}), 'blocks.K.resid_pre', 'final_norm', or a hidden-state "
            f"index 0..{n_blocks}")
    raise TypeError(f"a site is a name such as 'blocks.5.resid_post', a Site or a layer int, "
                    f"got {type(spec).__name__} {spec!r:.40}")


def _check_block(k: int | None, n_blocks: int, name: str) -> None:
    if k is not None and not 0 <= k < n_blocks:
        raise ValueError(f"site {name!r} out of range: this model has blocks 0..{n_blocks - 1}")


def llama_cpp_block(where: Site, n_blocks: int) -> int:
    """llama.cpp's (and repeng's) block number ``k`` for a site: tensor ``direction.k`` is
    added to the output of block ``k``. The embeddings, block 0 and the final norm have none."""
    if where.kind == FINAL_NORM:
        raise ValueError(
            f"hidden state {n_blocks} is after the final norm, which llama.cpp control vectors "
            f"cannot edit (they add to block outputs): export site "
            f"'blocks.{n_blocks - 1}.resid_post' (the last block's output, before the norm)")
    if where.block is None or where.block < 1:
        raise ValueError(
            f"llama.cpp control vectors start at the output of block 1 (hidden state 2; it "
            f"refuses direction.0), so site {where.name!r} cannot be exported")
    return where.block


def from_llama_cpp_block(k: int, n_blocks: int) -> Site:
    """The site a llama.cpp ``direction.k`` tensor edits (inverse of :func:`llama_cpp_block`)."""
    return site(resid_post(k), n_blocks)


__all__ = ["Site", "embeddings", "final_norm", "from_llama_cpp_block", "llama_cpp_block",
           "resid_post", "site"]
