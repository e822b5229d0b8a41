"""Tokenizer helpers shared by the kernel.

>>> word_token_ids(session.tokenizer, ["king", "queen"])     # doctest: +SKIP
[10439, 27242]
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Literal


def word_token_ids(tokenizer, words: Sequence[str], *,
                   several: Literal["none", "first"] = "none") -> list[int | None]:
    """The token of each word, by one rule used everywhere ("the token of a word"): the word
    as one token mid-sentence (``" word"``), else alone (``"word"``). A word that is several
    tokens either way gives None, or with ``several="first"`` the first token of
    ``" word"`` (for scoring next-token probabilities).

    >>> word_token_ids(tok, ["king", "antidisestablishment"])           # doctest: +SKIP
    [10439, None]
    """
    out: list[int | None] = []
    for word in words:
        word = word.strip()
        found = None
        for form in (" " + word, word):
            ids = tokenizer(form, add_special_tokens=False)["input_ids"]
            if len(ids) == 1:
                found = ids[0]
                break
        if found is None and several == "first":
            found = tokenizer(" " + word, add_special_tokens=False)["input_ids"][0]
        out.append(found)
    return out


def readable_token(tokenizer, token_id: int) -> str:
    """The text of one token, or its bytes as ``<0xE6><0x98>`` when it is only part of a
    multi-byte character (byte-level BPE pieces and byte-fallback tokens decode to "�").

    >>> readable_token(session.tokenizer, 162)      # doctest: +SKIP
    '<0xE6>'
    """
    text = tokenizer.decode([int(token_id)])
    if "\ufffd" not in text:
        return text
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    if isinstance(piece, str) and piece.startswith("<0x") and piece.endswith(">"):
        return piece  # SentencePiece byte fallback: already readable
    decoder = _byte_decoder()
    if isinstance(piece, str) and piece and all(ch in decoder for ch in piece):
        raw = bytes(decoder[ch] for ch in piece)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "".join(f"<0x{b:02X}>" for b in raw)
    return text


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: printable stand-in character -> byte."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(keep, chars, strict=True)}
