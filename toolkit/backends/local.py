"""The local backend: the model runs in this process and is read and edited by forward hooks.

This module is the only place in the kernel that registers a hook. Every read and edit names a
:class:`~reprlab.sites.Site`:

- ``embeddings``: a pre-hook on block 0 (its input);
- ``blocks.k.resid_post``: a hook on block ``k``'s output;
- ``final_norm``: a hook on the final norm's output (the last block's when a model has none).

Edits at a site are attached before reads there, so a read sees the edited stream. Every
handle is removed in ``finally``, whatever happens inside the block (errors, interrupts, an
early stop).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Any

import torch

from ..sites import EMBEDDINGS, FINAL_NORM, Site, site
from .architecture import ModelParts, find_parts

EditFn = Callable[[torch.Tensor], "torch.Tensor | None"]
ReadFn = Callable[[torch.Tensor], None]


class StopForward(Exception):
    """Raised inside a read hook to end the forward pass once the deepest site is read."""


def _first(value):
    return value[0] if isinstance(value, tuple) else value


def _replace_first(value, hidden):
    return (hidden, *value[1:]) if isinstance(value, tuple) else hidden


def _hidden_from_inputs(args, kwargs) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _with_hidden_in_inputs(args, kwargs, hidden):
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


class LocalBackend:
    """Reads, edits, early-stopping forwards, generation steps and gradients of an in-process
    transformers model, all addressed by site.

    >>> backend = LocalBackend(model)                                   # doctest: +SKIP
    >>> seen = {}
    >>> backend.run(ids, reads={site(6, 30): seen.setdefault}, stop_after=site(6, 30))
    ... # doctest: +SKIP
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.parts: ModelParts = find_parts(model)
        self._paused = 0  # depth of edits_paused(): edit hooks pass the stream through

    # -- what the model is ----------------------------------------------------------------

    @property
    def n_blocks(self) -> int:
        return len(self.parts.blocks)

    @property
    def width(self) -> int:
        return self.parts.unembedding.shape[-1]

    @property
    def unembedding(self) -> torch.Tensor:
        """Unembedding matrix ``[vocab, width]`` (rows are token output vectors)."""
        return self.parts.unembedding

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def site(self, spec: Site | int | str) -> Site:
        return site(spec, self.n_blocks)

    # -- hooks ----------------------------------------------------------------------------

    def _module(self, where: Site):
        """(module, is_pre_hook) that carries the stream at ``where``."""
        blocks = self.parts.blocks
        if where.kind == EMBEDDINGS:
            return blocks[0], True
        if where.kind == FINAL_NORM:
            norm = self.parts.final_norm
            return (norm if norm is not None else blocks[-1]), False
        return blocks[where.block], False

    def _attach(self, where: Site, fn: Callable[[torch.Tensor], torch.Tensor | None]):
        module, pre = self._module(where)
        if pre:
            def pre_hook(module, args, kwargs):
                new = fn(_hidden_from_inputs(args, kwargs))
                return None if new is None else _with_hidden_in_inputs(args, kwargs, new)

            return module.register_forward_pre_hook(pre_hook, with_kwargs=True)

        def post_hook(module, args, output):
            new = fn(_first(output))
            return None if new is None else _replace_first(output, new)

        return module.register_forward_hook(post_hook)

    def _edit(self, edit: EditFn) -> Callable[[torch.Tensor], torch.Tensor | None]:
        return lambda hidden: None if self._paused else edit(hidden)

    @staticmethod
    def _read(read: ReadFn) -> Callable[[torch.Tensor], None]:
        def fn(hidden):
            read(hidden)
            return None

        return fn

    @contextmanager
    def attached(self, edits: Mapping[Site, EditFn] | None = None,
                 reads: Mapping[Site, ReadFn] | None = None) -> Iterator[None]:
        """Attach edits and reads (by site) for the duration of a ``with`` block."""
        with ExitStack() as stack:
            for where, fn in (edits or {}).items():
                stack.callback(self._attach(self.site(where), self._edit(fn)).remove)
            for where, fn in (reads or {}).items():
                stack.callback(self._attach(self.site(where), self._read(fn)).remove)
            yield

    @contextmanager
    def edits_paused(self) -> Iterator[None]:
        """Inside this block every attached edit passes the stream through unchanged."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    def hook_count(self) -> int:
        """Forward hooks attached to the blocks and the final norm (for tests)."""
        modules = list(self.parts.blocks)
        if self.parts.final_norm is not None:
            modules.append(self.parts.final_norm)
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks)  # noqa: SLF001
                   for m in modules)

    # -- forwards -------------------------------------------------------------------------

    def run(self, ids: torch.Tensor, mask: torch.Tensor | None = None,
            pos: torch.Tensor | None = None, *, reads: Mapping[Site, ReadFn] | None = None,
            edits: Mapping[Site, EditFn] | None = None, stop_after: Site | None = None,
            grad: bool = False) -> Any:
        """One forward pass over ``ids`` with ``edits`` and ``reads`` attached.

        ``stop_after``: end the pass right after that site is read (later blocks and the LM
        head never run; returns None). ``grad=True`` runs with autograd on (for lenses and
        attribution: a read may keep its tensor and call ``backward`` later); otherwise no
        graph is built. Returns the model's output when the pass runs to the end.
        """
        reads = {self.site(k): v for k, v in (reads or {}).items()}
        if stop_after is not None:
            stop = self.site(stop_after)
            inner = reads.get(stop)

            def read_and_stop(hidden, inner=inner):
                if inner is not None:
                    inner(hidden)
                raise StopForward

            reads[stop] = read_and_stop
        kwargs = {"input_ids": ids, "use_cache": False}
        if mask is not None:
            kwargs["attention_mask"] = mask
        if pos is not None:
            kwargs["position_ids"] = pos
        with self.attached(edits=edits, reads=reads), (
                torch.enable_grad() if grad else torch.no_grad()):
            try:
                return self.model(**kwargs)
            except StopForward:
                return None

    def streams_with_graph(self, ids: torch.Tensor, sites, *, dtype: torch.dtype | None = None,
                           ) -> dict[Site, torch.Tensor]:
        """The streams at ``sites`` of one forward over ``ids`` (stopped after the deepest),
        with their autograd graph kept: ``torch.autograd.grad(later, earlier, ...)`` then
        flows through the blocks in between (the Jacobian lens).

        The embeddings stream is made a leaf that requires grad and no parameter requires
        grad during the pass (flags restored after), so no weight gradient is ever built;
        edits attached to the model pass through. ``dtype`` (e.g. ``torch.bfloat16``) runs
        the pass under autocast: matmuls in that dtype, the residual stream in float32.

        >>> h = backend.streams_with_graph(ids, [site(3, 30), site(12, 30)])  # doctest: +SKIP
        """
        wanted = sorted({self.site(s) for s in sites})
        got: dict[Site, torch.Tensor] = {}
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        autocast = (torch.autocast(self.device.type, dtype=dtype) if dtype is not None
                    else nullcontext())

        def leaf(hidden):
            return hidden.detach().requires_grad_(True)

        def reader(where):
            return lambda hidden: got.__setitem__(where, hidden)

        with ExitStack() as stack:
            stack.callback(self._attach(self.site(EMBEDDINGS), leaf).remove)
            for p in trainable:
                p.requires_grad_(False)
                stack.callback(p.requires_grad_, True)
            with self.edits_paused(), autocast:
                self.run(ids, reads={w: reader(w) for w in wanted}, stop_after=wanted[-1],
                         grad=True)
        return {w: got[w] for w in wanted}

    def next_logits(self, ids: torch.Tensor, cache: Any = None, *,
                    edits: Mapping[Site, EditFn] | None = None,
                    ) -> tuple[torch.Tensor, Any]:
        """One generation step: float32 logits ``[vocab]`` of the token after ``ids`` and the
        updated KV cache, with ``edits`` attached while it runs."""
        with self.attached(edits=edits) if edits else nullcontext(), torch.inference_mode():
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1,
                             **self._cache_kwargs(cache))
        new_cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        return out.logits[0, -1].float(), new_cache

    def batch_next_logits(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor,
                          cache: Any = None) -> tuple[torch.Tensor, Any]:
        """One generation step of a left-padded batch: float32 logits ``[batch, vocab]`` of
        the token after each row and the updated KV cache (``mask`` covers the cached tokens
        and ``ids``; ``pos`` the positions of ``ids``). No edits are attached.

        >>> logits, cache = backend.batch_next_logits(ids, mask, pos)   # doctest: +SKIP
        """
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos,
                             use_cache=True, logits_to_keep=1, **self._cache_kwargs(cache))
        new_cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        return out.logits[:, -1].float(), new_cache

    # -- the output head -----------------------------------------------------------------

    def logits_at(self, hidden: torch.Tensor, where: Site | int | str, *,
                  dtype: torch.dtype | None = None) -> torch.Tensor:
        """What the output head would say from the stream ``hidden`` ``[..., width]`` read at
        ``where``: logits ``[..., vocab]`` of the final norm (skipped when ``where`` is the
        final norm itself) and then the LM head module, so a bias or tied weights count.

        Float32 math for a float32 model; a half-precision model's head runs in its own dtype
        (as the model does) and returns float32. The modules' own ``forward`` is called, so
        attached edits and reads do not fire: the result is a function of ``hidden`` alone.
        Autograd follows the caller's mode (a lens that needs gradients keeps them).
        ``dtype`` (e.g. ``torch.bfloat16``) runs the head under autocast in that dtype (for
        training a lens: the head matmul is most of its cost).

        >>> backend.logits_at(h, site(6, 30)).shape     # h: [tokens, 576]   # doctest: +SKIP
        torch.Size([tokens, 49152])
        """
        where = self.site(where)
        head = self.parts.lm_head
        own = head.weight.dtype
        h = hidden.to(device=self.device, dtype=own)
        norm = self.parts.final_norm
        with (torch.autocast(self.device.type, dtype=dtype) if dtype is not None
              else nullcontext()):
            if where.kind != FINAL_NORM and norm is not None:
                h = norm.forward(h).to(own)
            return head.forward(h).float()

    def _cache_kwargs(self, cache) -> dict:
        if cache is None:
            return {}
        name = getattr(self, "_cache_kw", None)
        if name is None:
            params = inspect.signature(self.model.forward).parameters
            name = self._cache_kw = "cache" if "cache" in params else "past_key_values"
        return {name: cache}


__all__ = ["EditFn", "LocalBackend", "ReadFn", "StopForward"]
