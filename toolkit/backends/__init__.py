"""The one seam between the kernel and a model: read and edit at sites, run a forward that
stops early, take generation steps with edits, and build graphs for gradients.

Every kernel function reaches the model through ``session.backend``, an object with the
:class:`Backend` protocol. :class:`LocalBackend` (forward hooks on an in-process transformers
model) is the one implementation today; sharded, GPU and remote (nnsight) models plug in as
other backends, never as changes to the analyses or the views.

>>> s.backend.run(ids, reads={s.site(6): print}, stop_after=s.site(6))   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import torch

from ..sites import Site
from .architecture import ModelParts, find_parts, num_blocks
from .local import EditFn, LocalBackend, ReadFn, StopForward


class Backend(Protocol):
    """What the kernel needs from a way of running a model."""

    n_blocks: int
    width: int
    unembedding: torch.Tensor
    device: torch.device

    def site(self, spec: Site | int | str) -> Site: ...

    def attached(self, edits: Mapping[Site, EditFn] | None = None,
                 reads: Mapping[Site, ReadFn] | None = None,
                 ) -> AbstractContextManager[None]: ...

    def edits_paused(self) -> AbstractContextManager[None]: ...

    def run(self, ids: torch.Tensor, mask: torch.Tensor | None = None,
            pos: torch.Tensor | None = None, *, reads: Mapping[Site, ReadFn] | None = None,
            edits: Mapping[Site, EditFn] | None = None, stop_after: Site | None = None,
            grad: bool = False) -> Any: ...

    def next_logits(self, ids: torch.Tensor, cache: Any = None, *,
                    edits: Mapping[Site, EditFn] | None = None) -> tuple[torch.Tensor, Any]: ...

    def batch_next_logits(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor,
                          cache: Any = None) -> tuple[torch.Tensor, Any]: ...

    def streams_with_graph(self, ids: torch.Tensor, sites: Sequence[Site | int | str], *,
                           dtype: torch.dtype | None = None) -> dict[Site, torch.Tensor]: ...

    def logits_at(self, hidden: torch.Tensor, where: Site | int | str, *,
                  dtype: torch.dtype | None = None) -> torch.Tensor: ...

    def hook_count(self) -> int: ...



__all__ = ["Backend", "EditFn", "LocalBackend", "ModelParts", "ReadFn", "StopForward",
           "find_parts", "num_blocks"]
