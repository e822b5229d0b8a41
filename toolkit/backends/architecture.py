"""Generic discovery of a causal LM's parts: decoder blocks, final norm, unembedding.

Works by structure, never by model name, so Llama, GPT-2, GPT-NeoX, Qwen2, Gemma, Mistral
and Phi style models all go through the same code path.

>>> parts = find_parts(model)   # doctest: +SKIP
>>> len(parts.blocks), parts.unembedding.shape
(30, torch.Size([49152, 576]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

# Names transformers uses for the norm applied after the last block.
_FINAL_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "final_norm")


@dataclass(frozen=True)
class ModelParts:
    """The pieces of a causal LM that the kernel hooks into."""

    blocks: nn.ModuleList
    final_norm: nn.Module | None
    lm_head: nn.Module

    @property
    def unembedding(self) -> torch.Tensor:
        """Unembedding matrix ``[vocab, width]`` (rows are token output vectors)."""
        return self.lm_head.weight


def num_blocks(model: nn.Module) -> int:
    """Number of decoder blocks declared by the model's config."""
    config = model.config
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    raise ValueError(f"cannot tell how many layers {type(model).__name__} has from its config")


def find_parts(model: nn.Module) -> ModelParts:
    """Find the decoder blocks, the final norm and the LM head of ``model``."""
    n = num_blocks(model)
    candidates = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == n]
    if not candidates:
        raise ValueError(
            f"found no list of {n} decoder blocks in {type(model).__name__}; "
            "reprlab supports transformers causal LMs with one stack of blocks"
        )
    blocks = max(candidates, key=lambda m: sum(p.numel() for p in m.parameters()))
    lm_head = model.get_output_embeddings()
    if lm_head is None or not hasattr(lm_head, "weight"):
        raise ValueError(f"{type(model).__name__} has no output embedding (LM head)")
    return ModelParts(blocks=blocks, final_norm=_find_final_norm(model), lm_head=lm_head)


def _find_final_norm(model: nn.Module) -> nn.Module | None:
    base = getattr(model, "base_model", model)
    for holder in (base, getattr(base, "decoder", None)):
        for name in _FINAL_NORM_NAMES:
            module = getattr(holder, name, None) if holder is not None else None
            if isinstance(module, nn.Module):
                return module
    return None


def supported_context(model: nn.Module) -> tuple[int, str] | None:
    """The most positions the model's position embedding tells apart, and why.

    A learned table of absolute positions has one row per position. Rotary embeddings turn
    each pair of dimensions by a position-dependent angle; the slowest pair completes a turn
    every ``2 pi theta^((d - 2) / d)`` tokens (``d`` rotary dimensions, base ``theta``, times
    a RoPE scaling factor), and positions further apart than that are no longer ordered by
    it. None when the model has neither (or its config does not say).
    """
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Embedding) and name.split(".")[-1] in (
                "wpe", "position_embeddings", "embed_positions"):
            return module.num_embeddings, f"its position embedding table has " \
                                          f"{module.num_embeddings} rows"
    config = model.config
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None)
    rope = rope if isinstance(rope, dict) else {}
    theta = rope.get("rope_theta", getattr(config, "rope_theta", None))
    heads = getattr(config, "num_attention_heads", None)
    head_dim = getattr(config, "head_dim", None) or (
        config.hidden_size // heads if isinstance(heads, int) and heads > 0 else None)
    if not isinstance(theta, (int, float)) or theta <= 1 or not isinstance(head_dim, int):
        return None
    dims = int(head_dim * (getattr(config, "partial_rotary_factor", None) or 1.0))
    if dims < 4:
        return None
    factor = rope.get("factor") if rope.get("rope_type", "default") != "default" else None
    factor = float(factor) if isinstance(factor, (int, float)) and factor >= 1 else 1.0
    cap = round(2 * math.pi * theta ** ((dims - 2) / dims) * factor)
    return cap, (f"its rotary position embedding (base {theta:g}, {dims} dimensions"
                 + (f", scaling {factor:g}" if factor != 1 else "")
                 + f") tells positions apart only up to about {cap} tokens")
