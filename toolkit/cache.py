"""The activation cache: what a session already computed, reused per text.

Each extraction is stored as one block (its texts, their read positions, dtype and layers).
A later request is answered text by text from any blocks that hold the same text, read at the
same position, in the same dtype, with every requested layer, so a subset, a superset or a
reordering of cached texts runs the model only on the texts it has not seen.

>>> cache = ActivationCache(fingerprint="abc")
>>> cache.entries, cache.ram_bytes
(0, 0)

Least recently used blocks are dropped once RAM (``ram_limit``) or on-disk stores
(``disk_limit``) exceed their budgets.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

from .activations import Activations, Position
from .conversion import cache_root
from .store import default_budget, disk_tensor, format_bytes, parse_bytes

TOKENS = "__tokens__"  # position key of a block holding every token of one text


@dataclass(eq=False)
class _Block:
    fingerprint: str
    dtype: torch.dtype
    acts: Activations
    rows: dict[tuple[str, Position], int] = field(default_factory=dict)

    @classmethod
    def of(cls, fingerprint: str, dtype: torch.dtype, acts: Activations, ats: Sequence) -> _Block:
        rows: dict[tuple[str, Position], int] = {}
        for i, key in enumerate(zip(acts.texts, ats, strict=True)):
            rows.setdefault(key, i)
        return cls(fingerprint, dtype, acts, rows)


class ActivationCache:
    """Cached activation blocks of one model, looked up per (text, position, dtype, layers).

    ``ram_limit`` bounds the bytes held in RAM, ``disk_limit`` those held in on-disk stores;
    ``hits`` counts requests answered without running the model.
    """

    RAM_LIMIT = 2 << 30  # default bound on cached activations held in RAM

    def __init__(self, fingerprint: str, ram_limit: int = RAM_LIMIT, disk_limit: int = 16 << 30):
        self.fingerprint = fingerprint
        self.ram_limit = ram_limit
        self.disk_limit = disk_limit
        self.hits = 0
        self._blocks: OrderedDict[int, _Block] = OrderedDict()
        self._next = 0

    # -- what it holds ---------------------------------------------------------------------

    @property
    def entries(self) -> int:
        """Number of cached blocks."""
        return len(self._blocks)

    @property
    def ram_bytes(self) -> int:
        """Bytes of RAM held by cached activations (on-disk stores do not count)."""
        return sum(b.acts.nbytes for b in self._blocks.values() if not b.acts.on_disk)

    @property
    def disk_bytes(self) -> int:
        """Bytes of cached activations held in on-disk stores."""
        return sum(b.acts.nbytes for b in self._blocks.values() if b.acts.on_disk)

    def clear(self) -> None:
        self._blocks.clear()

    # -- lookup ----------------------------------------------------------------------------

    def find(self, texts: Sequence[str], ats: Sequence[Position], dtype: torch.dtype,
             layers: tuple[int, ...]) -> list[tuple[_Block, int] | None]:
        """For each text, a cached (block, row) holding it at its position with ``layers``."""
        wanted = set(layers)
        usable = [b for b in reversed(self._blocks.values())  # most recent first
                  if b.fingerprint == self.fingerprint and b.dtype == dtype
                  and wanted <= set(b.acts.layers)]
        found: list[tuple[_Block, int] | None] = []
        for key in zip(texts, ats, strict=True):
            hit = None
            for block in usable:
                row = block.rows.get(key)
                if row is not None:
                    hit = (block, row)
                    break
            found.append(hit)
        return found

    def get(self, texts: Sequence[str], ats: Sequence[Position], at, dtype: torch.dtype,
            layers: tuple[int, ...], *, copy_ok: bool = True) -> Activations | None:
        """The cached activations of ``texts``, or None if any text is missing.

        One block holding exactly ``texts`` is returned as it is (or a view of its layers);
        rows gathered from several blocks are copied, unless ``copy_ok`` is False.
        """
        found = self.find(texts, ats, dtype, layers)
        if any(f is None for f in found):
            return None
        blocks = {id(b): b for b, _ in found}
        single = next(iter(blocks.values())) if len(blocks) == 1 else None
        if single is not None and [r for _, r in found] == list(range(len(single.acts))):
            acts = single.acts if single.acts.layers == layers else single.acts.select(layers)
        elif copy_ok:
            acts = assemble(found, texts, at, layers)
        else:
            return None
        for block in blocks.values():
            self._touch(block)
        self.hits += 1
        return acts

    def put(self, acts: Activations, ats: Sequence[Position], dtype: torch.dtype) -> _Block:
        """Store one extracted block; drop the least recently used ones over budget."""
        block = _Block.of(self.fingerprint, dtype, acts, ats)
        self._blocks[self._next] = block
        self._next += 1
        self._evict()
        return block

    def _evict(self) -> None:
        while len(self._blocks) > 1 and (self.ram_bytes > self.ram_limit
                                         or self.disk_bytes > self.disk_limit):
            self._blocks.popitem(last=False)

    def get_tokens(self, text: str, layers: tuple[int, ...]) -> Activations | None:
        """Cached every-token activations of ``text`` (see :meth:`Session.token_activations`)."""
        found = self.find([text], [TOKENS], torch.float32, layers)[0]
        if found is None:
            return None
        block = found[0]
        self._touch(block)
        self.hits += 1
        acts = block.acts
        return acts if acts.layers == layers else acts.select(layers)

    def put_tokens(self, acts: Activations) -> None:
        block = _Block(self.fingerprint, torch.float32, acts, {(acts.texts[0], TOKENS): 0})
        self._blocks[self._next] = block
        self._next += 1
        self._evict()

    def _touch(self, block: _Block) -> None:
        for key, b in self._blocks.items():
            if b is block:
                self._blocks.move_to_end(key)
                return


def disk_store_if_over(budget: int | str | None, shape: tuple[int, int, int],
                       dtype: torch.dtype) -> torch.Tensor | None:
    """A float16 tensor on disk of ``shape`` if it would take more RAM than ``budget``
    (bytes, e.g. ``"2GB"``; None = :func:`~reprlab.store.default_budget`), else None."""
    needed = math.prod(shape) * dtype.itemsize
    budget = default_budget() if budget is None else parse_bytes(budget)
    if needed <= budget:
        return None
    folder = cache_root() / "activations"
    warnings.warn(
        f"{shape[0]} layers x {shape[1]} texts need {format_bytes(needed)}, over the memory "
        f"budget of {format_bytes(budget)}: streaming float16 values to disk in {folder} "
        "(pass memory_budget= to change the budget)", stacklevel=4)
    return disk_tensor(shape, torch.float16, folder)


def over_budget(budget: int | str | None, shape: tuple[int, int, int], dtype) -> bool:
    """Whether a ``shape`` result of ``dtype`` takes more RAM than ``budget``."""
    budget = default_budget() if budget is None else parse_bytes(budget)
    return math.prod(shape) * dtype.itemsize > budget


def assemble(found: Sequence[tuple[_Block, int]], texts: Sequence[str], at,
             layers: tuple[int, ...]) -> Activations:
    """One Activations from cached rows of several blocks, in the order of ``texts``."""
    first = found[0][0].acts
    values = torch.empty(len(layers), len(texts), first.width, dtype=first.values.dtype,
                         device=first.values.device)
    by_block: dict[int, list[tuple[int, int]]] = {}
    blocks = {}
    for i, (block, row) in enumerate(found):
        by_block.setdefault(id(block), []).append((i, row))
        blocks[id(block)] = block
    for key, pairs in by_block.items():
        src = blocks[key].acts
        idx = [src.layers.index(layer) for layer in layers]
        dest = [i for i, _ in pairs]
        rows = [r for _, r in pairs]
        picked = src.values.index_select(1, torch.tensor(rows, device=src.values.device))
        values[:, dest] = picked[idx].to(values.dtype)
    return replace(  # keeps any context the block carries (model name, session)
        first,
        values=values,
        layers=layers,
        texts=tuple(texts),
        tokens=tuple(b.acts.tokens[r] for b, r in found),
        positions=tuple(b.acts.positions[r] for b, r in found),
        at=at,
    )


__all__ = ["ActivationCache"]
