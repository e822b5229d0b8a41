"""Tiny random causal LMs built in memory, for fast tests of the real code path.

Each uses a real transformers model class and a real (byte-level) fast tokenizer, so layer
discovery, hooks, padding and word lookup run exactly as on a full model.

>>> model, tokenizer = build_tiny("llama", seed=0)   # doctest: +SKIP

An arch name ending in ``-bos`` (``"llama-bos"``, also through ``Session.tiny(arch=...)``)
gives a tokenizer that opens every text with a ``<|bos|>`` special token, as most real
tokenizers do: the case where "mean over non-special tokens" differs from "mean over tokens".
"""

from __future__ import annotations

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"
BOS = "<|bos|>"
BOS_SUFFIX = "-bos"
WIDTH = 64
BLOCKS = 4

# One config per family; all share the byte-level tokenizer's vocabulary.
_COMMON = dict(hidden_size=WIDTH, num_hidden_layers=BLOCKS, num_attention_heads=4,
               intermediate_size=128, max_position_embeddings=512)
TINY_CONFIGS = {
    "llama": ("LlamaConfig", dict(_COMMON, num_key_value_heads=2)),
    "mistral": ("MistralConfig", dict(_COMMON, num_key_value_heads=2, sliding_window=None)),
    "qwen2": ("Qwen2Config", dict(_COMMON, num_key_value_heads=2)),
    "gemma": ("GemmaConfig", dict(_COMMON, num_key_value_heads=1, head_dim=16)),
    "phi": ("PhiConfig", dict(_COMMON)),
    "gpt_neox": ("GPTNeoXConfig", dict(_COMMON)),
    "gpt2": ("GPT2Config", dict(n_embd=WIDTH, n_layer=BLOCKS, n_head=4, n_positions=512)),
}


def byte_tokenizer(bos: bool = False) -> PreTrainedTokenizerFast:
    """A byte-level tokenizer: one token per UTF-8 byte, plus an end-of-text token.

    ``bos=True``: also a ``<|bos|>`` special token that opens every encoded text (flagged in
    ``return_special_tokens_mask``; ``add_special_tokens=False`` leaves it out).
    """
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab[EOS] = len(vocab)
    if bos:
        vocab[BOS] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    extra = {}
    if bos:
        core.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])])
        extra["bos_token"] = BOS
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, pad_token=EOS, **extra)
    tok.padding_side = "left"
    return tok


def build_tiny(arch: str = "llama", seed: int = 0):
    """A randomly initialised ``arch`` model (4 blocks, width 64) and its tokenizer.

    ``arch`` is a key of :data:`TINY_CONFIGS`, optionally with the suffix ``-bos`` for a
    tokenizer that adds a BOS special token (see :func:`byte_tokenizer`).
    """
    base = arch[: -len(BOS_SUFFIX)] if arch.endswith(BOS_SUFFIX) else arch
    if base not in TINY_CONFIGS:
        choices = sorted(TINY_CONFIGS)
        raise ValueError(f"unknown tiny arch {arch!r}; choose from {choices} (optionally with "
                         f"the suffix {BOS_SUFFIX!r} for a tokenizer that adds a BOS token)")
    tok = byte_tokenizer(bos=base != arch)
    class_name, kwargs = TINY_CONFIGS[base]
    bos_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    config = getattr(transformers, class_name)(
        vocab_size=len(tok), bos_token_id=bos_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.eos_token_id, tie_word_embeddings=False, **kwargs,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.AutoModelForCausalLM.from_config(config)
    return model, tok
