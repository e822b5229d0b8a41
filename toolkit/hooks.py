"""Forward hooks addressed by hidden-state index, always removed on exit.

Hidden state ``L`` follows transformers' ``output_hidden_states`` numbering: ``0`` is the input
to the first block (the embeddings, after any model-specific scaling), ``L`` is the output of
block ``L``, and the last one is taken after the final norm, as transformers reports it.

Two kinds of hook:

- *edit* hooks change the residual stream at hidden state ``L`` (what flows into block ``L``);
  for the last index they act on the last block's output, before the final norm.
- *read* hooks see hidden state ``L`` exactly as ``output_hidden_states`` would report it, after
  any edits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager

import torch

from .architecture import ModelParts

EditFn = Callable[[torch.Tensor], "torch.Tensor | None"]
ReadFn = Callable[[torch.Tensor], None]


class StopForward(Exception):
    """Raised inside a read hook to end the forward pass once the deepest layer is read."""


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


_PAUSED = "_reprlab_edits_paused"  # attribute on parts.blocks: depth of edits_paused()


@contextmanager
def edits_paused(parts: ModelParts) -> Iterator[None]:
    """Inside this block every attached edit hook passes the hidden state through unchanged."""
    setattr(parts.blocks, _PAUSED, getattr(parts.blocks, _PAUSED, 0) + 1)
    try:
        yield
    finally:
        setattr(parts.blocks, _PAUSED, getattr(parts.blocks, _PAUSED) - 1)


def _attach_edit(parts: ModelParts, layer: int, edit: EditFn):
    blocks = parts.blocks

    def fn(hidden):
        return None if getattr(blocks, _PAUSED, 0) else edit(hidden)

    if layer == 0:

        def pre_hook(module, args, kwargs):
            new = fn(_hidden_from_inputs(args, kwargs))
            return None if new is None else _with_hidden_in_inputs(args, kwargs, new)

        return blocks[0].register_forward_pre_hook(pre_hook, with_kwargs=True)

    def post_hook(module, args, output):
        new = fn(_first(output))
        return None if new is None else _replace_first(output, new)

    return blocks[layer - 1].register_forward_hook(post_hook)


def _attach_read(parts: ModelParts, layer: int, fn: ReadFn):
    blocks = parts.blocks
    if layer < len(blocks):

        def pre_hook(module, args, kwargs):
            fn(_hidden_from_inputs(args, kwargs))

        return blocks[layer].register_forward_pre_hook(pre_hook, with_kwargs=True)

    target = parts.final_norm if parts.final_norm is not None else blocks[-1]

    def post_hook(module, args, output):
        fn(_first(output))

    return target.register_forward_hook(post_hook)


@contextmanager
def attached(
    parts: ModelParts,
    edits: Mapping[int, EditFn] | None = None,
    reads: Mapping[int, ReadFn] | None = None,
) -> Iterator[None]:
    """Attach edit and read hooks for the duration of a ``with`` block.

    Edits are attached before reads so that a read at the same layer sees the edited stream.
    Every handle is removed in ``finally``, whatever happens inside the block.
    """
    with ExitStack() as stack:
        for layer, fn in (edits or {}).items():
            stack.callback(_attach_edit(parts, layer, fn).remove)
        for layer, fn in (reads or {}).items():
            stack.callback(_attach_read(parts, layer, fn).remove)
        yield


def hook_count(parts: ModelParts) -> int:
    """Number of forward hooks currently attached to blocks and the final norm (for tests)."""
    modules = list(parts.blocks) + ([parts.final_norm] if parts.final_norm is not None else [])
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) for m in modules  # noqa: SLF001
    )
