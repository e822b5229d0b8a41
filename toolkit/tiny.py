"""Tiny random causal LMs built in memory, for fast tests of the real code path.

Each uses a real transformers model class and a real (byte-level) fast tokenizer, so layer
discovery, hooks, padding and word lookup run exactly as on a full model.

>>> model, tokenizer = build_tiny("llama", seed=0)   # doctest: +SKIP
"""

from __future__ import annotations

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"
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


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer: one token per UTF-8 byte, plus an end-of-text token."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab[EOS] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, pad_token=EOS)
    tok.padding_side = "left"
    return tok


def build_tiny(arch: str = "llama", seed: int = 0):
    """A randomly initialised ``arch`` model (4 blocks, width 64) and its tokenizer."""
    if arch not in TINY_CONFIGS:
        raise ValueError(f"unknown tiny arch {arch!r}; choose from {sorted(TINY_CONFIGS)}")
    tok = byte_tokenizer()
    class_name, kwargs = TINY_CONFIGS[arch]
    config = getattr(transformers, class_name)(
        vocab_size=len(tok), bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.eos_token_id, tie_word_embeddings=False, **kwargs,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.AutoModelForCausalLM.from_config(config)
    return model, tok
