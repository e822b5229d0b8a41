"""Activations: hidden states of many texts at many layers, and the batched extractor.

>>> acts = session.activations(["I loved it", "I hated it"], layers=[0, 6, 12])  # doctest: +SKIP
>>> acts.values.shape          # [layers, texts, width]
torch.Size([3, 2, 576])
>>> acts.layer(12).shape       # rows for hidden state 12
torch.Size([2, 576])
"""

from __future__ import annotations

import numbers
import re
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .model_ref import FromModel, ModelRef, live_session
from .sites import Site
from .store import is_file_backed
from .tokens import readable_token

if TYPE_CHECKING:
    from .backends import Backend
    from .session import Session

Position = str | int
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True, eq=False)
class Activations(FromModel):
    """Hidden states ``values[l, i]`` of text ``i`` at hidden state ``layers[l]``.

    ``tokens[i]`` is the token row ``i`` was read at and ``positions[i]`` its index in the
    text's token sequence (``-1`` for ``at="mean"``). ``source`` names the model that made
    them (None for activations built by hand): a value, not a live session, so activations
    pickle and never keep a model alive. Projections under "standardized", "whitened" and
    "causal" find that model's live session from it (:attr:`session`), and directions from
    another model are refused.
    """

    values: torch.Tensor
    layers: tuple[int, ...]
    texts: tuple[str, ...]
    tokens: tuple[str, ...]
    positions: tuple[int, ...]
    at: Position | tuple[Position, ...]
    source: ModelRef | None = None
    # a weak reference to the session that made these, preferred by :attr:`session` over other
    # live sessions of the same weights (whose reference sets may differ); never pickled
    origin: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        L, N = self.values.shape[:2]
        if L != len(self.layers) or N != len(self.texts):
            raise ValueError(
                f"values of shape {tuple(self.values.shape)} do not match "
                f"{len(self.layers)} layers and {len(self.texts)} texts"
            )

    @property
    def width(self) -> int:
        return self.values.shape[-1]

    @property
    def session(self) -> Session | None:
        """The session that made these if it is alive, else a live session of the same weights
        (None if none is loaded)."""
        made_by = self.origin() if self.origin is not None else None
        return live_session(self.source, prefer=made_by)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "origin": None}  # a weak reference does not pickle

    def copy(self) -> Activations:
        """The same activations with values in storage of their own."""
        return replace(self, values=self.values.clone())

    @property
    def on_disk(self) -> bool:
        """Whether ``values`` live in the memory-mapped float16 store (see ``memory_budget``)."""
        return is_file_backed(self.values)

    @property
    def nbytes(self) -> int:
        return self.values.numel() * self.values.element_size()

    def __len__(self) -> int:
        return len(self.texts)

    def layer(self, layer: int) -> torch.Tensor:
        """Rows ``[n_texts, width]`` for hidden state ``layer``."""
        try:
            return self.values[self.layers.index(layer)]
        except ValueError:
            raise KeyError(
                f"layer {layer} was not extracted; available: {list(self.layers)}"
            ) from None

    def select(self, layers: Sequence[int] | None = None, rows=None) -> Activations:
        """A view on some layers and/or rows (an index list, slice or boolean mask)."""
        layer_list = tuple(self.layers if layers is None else layers)
        idx = [self.layers.index(layer) for layer in layer_list if layer in self.layers]
        if len(idx) != len(layer_list):
            missing = sorted(set(layer_list) - set(self.layers))
            raise KeyError(f"layers {missing} were not extracted; available: {list(self.layers)}")
        contiguous = idx == list(range(idx[0], idx[0] + len(idx))) if idx else False
        values = self.values[idx[0] : idx[-1] + 1] if contiguous else self.values[idx]
        keep = list(range(len(self.texts)))
        if rows is not None:
            keep = np.arange(len(self.texts))[_as_index(rows)].tolist()
            values = values[:, keep]
        return Activations(
            values=values,
            layers=layer_list,
            texts=tuple(self.texts[i] for i in keep),
            tokens=tuple(self.tokens[i] for i in keep),
            positions=tuple(self.positions[i] for i in keep),
            at=self.at,
            source=self.source,
            origin=self.origin,
        )

    def numpy(self) -> np.ndarray:
        return self.values.detach().cpu().numpy()

    def __repr__(self) -> str:
        layers = _compact_range(self.layers)
        return (
            f"Activations({len(self.layers)} layers [{layers}] x {len(self.texts)} texts "
            f"x {self.width} dims, at={self.at!r}, model={self.model!r})"
        )


def _as_index(rows):
    if isinstance(rows, torch.Tensor):
        rows = rows.cpu().numpy()
    if isinstance(rows, slice):
        return rows
    rows = np.asarray(rows)
    return rows.astype(int) if rows.size == 0 else rows


def _compact_range(layers: Sequence[int]) -> str:
    if len(layers) > 2 and list(layers) == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}..{layers[-1]}"
    return ", ".join(map(str, layers))


# ---------------------------------------------------------------------------------------------
# Extraction


@dataclass(frozen=True)
class _Encoded:
    ids: list[int]
    read_at: int          # index of the token to read, or -1 for the mean
    mean_mask: list[bool]  # tokens averaged for at="mean" (non-special tokens)
    token: str
    occurrences: int = 1   # whole-word occurrences of a word position (the last is read)


def validate_texts(texts) -> list[str]:
    """Check ``texts`` is a non-empty list of non-empty strings; return it as a list."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string: wrap it as [text]")
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}") from None
    if not texts:
        raise ValueError("texts is empty: pass at least one text")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, not str: {text!r:.60}")
        if not text.strip():
            raise ValueError(f"texts[{i}] is empty or blank; every text needs at least one token")
    return texts


def common_words(texts: Sequence[str], limit: int = 8) -> list[tuple[str, int]]:
    """Words (and punctuation marks) by how many of ``texts`` contain them, most first: the
    candidates for ``at=word``, which needs a word in every text.

    >>> common_words(["The cat sat.", "The dog ran.", "A bird."], limit=3)
    [('.', 3), ('The', 2), ('cat', 1)]
    """
    counts = Counter(w for t in texts for w in dict.fromkeys(re.findall(r"\w+|[^\w\s]", t)))
    return counts.most_common(limit)


def texts_without(texts: Sequence[str], word: str) -> list[int]:
    """Indices of the texts that do not contain ``word`` (where ``at=word`` would fail)."""
    return [i for i, t in enumerate(texts) if word not in t]


def position_key(at: Position | Sequence[Position], n_texts: int) -> Position | tuple:
    """Validate a position spec: "last", "mean", an int token index, a word to find, or a
    list/tuple with one of those per text. Returns a hashable spec."""
    if isinstance(at, (list, tuple)):
        if len(at) != n_texts:
            raise ValueError(f"at has {len(at)} positions but there are {n_texts} texts")
        for i, a in enumerate(at):
            if isinstance(a, (list, tuple)):
                raise TypeError(f"at[{i}] is a {type(a).__name__}: pass one position per text "
                                "('last', 'mean', an int or a word), not a nested list")
        return tuple(position_key(a, 1) for a in at)
    if isinstance(at, numbers.Integral) and not isinstance(at, bool):
        return int(at)
    if not isinstance(at, str):
        raise TypeError(f"at must be 'last', 'mean', an int, a word or a list of these, got {at!r}")
    if isinstance(at, str) and not at:
        raise ValueError("at='' is empty: use 'last', 'mean', a token index, or a word")
    return at


def encode(tokenizer, text: str, at: Position) -> _Encoded:
    """Tokenize one text and locate the token to read."""
    enc = tokenizer(
        text, return_special_tokens_mask=True, return_offsets_mapping=_is_fast(tokenizer)
    )
    ids = list(enc["input_ids"])
    special = list(enc.get("special_tokens_mask") or [0] * len(ids))
    mean_mask = [not s for s in special]
    if not any(mean_mask):
        mean_mask = [True] * len(ids)
    if at == "mean":
        return _Encoded(ids, -1, mean_mask, "<mean>")
    if at == "last":
        index = len(ids) - 1
    elif isinstance(at, int):
        if not -len(ids) <= at < len(ids):
            raise IndexError(
                f"token index {at} is out of range for text {text!r:.80} with {len(ids)} tokens"
            )
        index = at % len(ids)
    else:
        index, count = _word_token_index(tokenizer, text, at, enc, ids)
        return _Encoded(ids, index, mean_mask, readable_token(tokenizer, ids[index]), count)
    return _Encoded(ids, index, mean_mask, readable_token(tokenizer, ids[index]))


def _is_fast(tokenizer) -> bool:
    return bool(getattr(tokenizer, "is_fast", False))


def _word_token_index(tokenizer, text: str, word: str, enc, ids) -> tuple[int, int]:
    """Index of the last token of the last whole-word occurrence of ``word`` in ``text``, and
    how many whole-word occurrences there are ("day" is not read inside " today").

    Characters map to tokens by the tokenizer's character offsets: a character split over
    several byte tokens (an emoji, a CJK or Hebrew letter) is read at its *last* byte token,
    the first position where the model has seen all of it. Words in scripts written without
    spaces (Chinese, Japanese, Thai, ...) match inside running text.
    """
    matches = list(re.finditer(_whole_word(word), text))
    if not matches:
        inside = re.search(r"\w*" + re.escape(word) + r"\w*", text)
        hint = (f" (it occurs only inside {inside.group(0)!r}; pass the whole word or a token "
                "index)" if inside else "")
        raise ValueError(f"word {word!r} not found in text {text!r:.120}{hint}")
    last_char = matches[-1].end() - 1
    offsets = enc.get("offset_mapping") if _is_fast(tokenizer) else None
    if offsets:
        covering = [i for i, (a, b) in enumerate(offsets) if a <= last_char < b]
        if covering:
            return covering[-1], len(matches)
    # Slow tokenizer (or odd offsets): count the tokens of the prefix ending with the word.
    prefix = tokenizer(text[: last_char + 1])["input_ids"]
    return min(len(prefix), len(ids)) - 1, len(matches)


# Scripts written without spaces between words: a word there has no boundary to respect.
_UNSPACED = ("\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3100-\u312f"
             "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
             "\U00020000-\U0002fa1f")
_SPACED_WORD_CHAR = f"[^\\W{_UNSPACED}]"


def _whole_word(word: str) -> str:
    """A regex for ``word`` not glued to letters or digits on a side where it has one.

    Only letters of space-separated scripts count on either side: "猫" matches in "我爱猫和狗",
    "cat" in "猫cat猫", but "day" not in "today".
    """
    before = f"(?<!{_SPACED_WORD_CHAR})" if re.match(_SPACED_WORD_CHAR, word[0]) else ""
    after = f"(?!{_SPACED_WORD_CHAR})" if re.match(_SPACED_WORD_CHAR, word[-1]) else ""
    return before + re.escape(word) + after


def extract(
    backend: Backend,
    tokenizer,
    texts: list[str],
    sites: tuple[Site, ...],
    at: Position,
    *,
    batch_size: int,
    pad_id: int,
    progress: ProgressFn | None = None,
    dtype: torch.dtype = torch.float32,
    out: torch.Tensor | None = None,
    max_tokens: int | None = None,
) -> tuple[torch.Tensor, list[_Encoded]]:
    """Run the model in left-padded batches and read the stream at ``sites`` at ``at``.

    Returns values ``[len(sites), len(texts), width]`` of ``dtype`` (float32, or float16 to
    halve memory) on the model's device; positions are read in float32 first. With ``out``
    (such as a tensor on disk), batches are written into it instead, in its dtype.
    Batches are formed from texts of similar length to keep padding small. The forward stops
    at the deepest site, so later blocks and the LM head never run. A text longer than
    ``max_tokens`` (the model's context) is refused before anything runs.
    """
    per_text = at if isinstance(at, tuple) else [at] * len(texts)
    encoded = [encode(tokenizer, t, a) for t, a in zip(texts, per_text, strict=True)]
    for i, e in enumerate(encoded):
        check_length(len(e.ids), max_tokens, f"texts[{i}]")
    repeated = [i for i, e in enumerate(encoded) if e.occurrences > 1]
    if repeated:
        i = repeated[0]
        warnings.warn(
            f"the word {per_text[i]!r} occurs {encoded[i].occurrences} times in texts[{i}]"
            + (f" (and more than once in {len(repeated) - 1} other texts)" if len(repeated) > 1
               else "") + ": reading its last occurrence; pass a token index to read another",
            stacklevel=4)
    device = backend.device
    if out is None:
        out = torch.empty(len(sites), len(texts), backend.width, dtype=dtype, device=device)
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i].ids))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for done, batch in enumerate(batches, 1):
        ids, mask, pos = left_pad([encoded[i].ids for i in batch], pad_id, device)
        read = _position_reader([encoded[i] for i in batch], ids.shape[1])
        captured = read_sites(backend, sites, ids, mask, pos, keep=read)
        rows = torch.stack([captured[where] for where in sites])  # [S, b, D]
        out[:, batch] = rows.to(device=out.device, dtype=out.dtype)
        if progress is not None:
            progress(done, len(batches))
    return out, encoded


def extract_tokens(backend: Backend, tokenizer, text: str, sites: tuple[Site, ...],
                   max_tokens: int | None = None):
    """All token positions of one unpadded text: values ``[S, T, D]`` and the token strings
    (a byte of a multi-byte character reads as ``<0xE6>``)."""
    ids = tokenizer(text)["input_ids"]
    check_length(len(ids), max_tokens, "the text")
    input_ids, mask, pos = left_pad([ids], 0, backend.device)
    captured = read_sites(backend, sites, input_ids, mask, pos)
    values = torch.stack([captured[where][0] for where in sites]).float()
    return values, [readable_token(tokenizer, i) for i in ids]


def check_length(n_tokens: int, max_tokens: int | None, what: str) -> None:
    """Refuse a text longer than the model's context, saying what to do."""
    if max_tokens is not None and n_tokens > max_tokens:
        raise ValueError(f"{what} has {n_tokens} tokens but this model reads at most "
                         f"{max_tokens}: shorten it or split it into several texts")


def read_sites(backend: Backend, sites, ids, mask, pos, keep=None) -> dict[Site, torch.Tensor]:
    """One forward pass through ``backend`` that records ``sites`` and stops right after the
    deepest one.

    ``keep(hidden)`` reduces each recorded state as soon as it is produced (e.g. to the rows
    read), so the full ``[b, T, D]`` states of earlier sites can be freed during the pass.
    """
    captured: dict[Site, torch.Tensor] = {}

    def reader(where):
        def read(hidden):
            captured[where] = hidden if keep is None else keep(hidden)

        return read

    backend.run(ids, mask, pos, reads={where: reader(where) for where in sites},
                stop_after=max(sites))
    return captured


def left_pad(seqs: list[list[int]], pad_id: int, device):
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, T - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[row, T - len(s) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), pos.to(device)


def _position_reader(encoded: list[_Encoded], T: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function from a left-padded batch's hidden states ``[b, T, D]`` to the float32 rows
    read ``[b, D]``: each text at its position, or its mean over non-special tokens."""
    if all(e.read_at >= 0 for e in encoded):
        cols = torch.tensor([T - len(e.ids) + e.read_at for e in encoded])
        rows = torch.arange(len(encoded))

        def at_positions(hidden: torch.Tensor) -> torch.Tensor:
            return hidden[rows.to(hidden.device), cols.to(hidden.device)].float()

        return at_positions
    weights = torch.zeros(len(encoded), T)
    for row, e in enumerate(encoded):
        start = T - len(e.ids)
        if e.read_at >= 0:
            weights[row, start + e.read_at] = 1.0
        else:  # mean over the text's non-special real tokens
            m = torch.tensor(e.mean_mask, dtype=torch.float32)
            weights[row, start:] = m / m.sum()

    def weighted(hidden: torch.Tensor) -> torch.Tensor:
        w = weights.to(hidden.device)
        # torch.where, not a product: padded positions may hold NaN and 0 * NaN is NaN.
        kept = torch.where(w[:, :, None] > 0, hidden.float(), 0.0)
        return torch.einsum("btd,bt->bd", kept, w)

    return weighted
