"""Tokenizer helpers shared by the kernel.

>>> single_token(session.tokenizer, "king")     # doctest: +SKIP
10439
"""

from __future__ import annotations


def single_token(tokenizer, word: str) -> int | None:
    """Id of ``word`` as one token mid-sentence (``" word"``), else alone (``"word"``); None if
    it is more than one token either way."""
    for form in (" " + word, word):
        ids = tokenizer(form, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            return ids[0]
    return None
