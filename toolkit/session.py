"""Session: one live model + tokenizer + device that every kernel call and widget shares.

>>> s = Session.load()                  # embedded SmolLM2-135M-Instruct, offline  # doctest: +SKIP
>>> acts = s.activations(["Monday is here"], at="Monday")                         # doctest: +SKIP
>>> s.generate("The capital of France is", max_new_tokens=5)                      # doctest: +SKIP
"""

from __future__ import annotations

import numbers
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .activations import (
    Activations,
    Position,
    ProgressFn,
    extract,
    extract_tokens,
    position_key,
    validate_texts,
)
from .backends import EditFn, LocalBackend, ReadFn
from .cache import ActivationCache, assemble, disk_store_if_over, over_budget
from .checks import as_int, as_seed
from .geometry import Geometry
from .loading import load_model
from .model_ref import ModelRef, register_live, weights_fingerprint, weights_version
from .registry import DirectionRegistry
from .sites import Site, site
from .steering import stream
from .store import default_budget
from .tiny import build_tiny


@dataclass(frozen=True)
class SessionInfo:
    """What a session runs: shown by ``repr(session)`` and the widgets' headers."""

    name: str
    blocks: int
    width: int
    vocab: int
    params: int
    device: str
    dtype: str

    @property
    def hidden_states(self) -> int:
        """Number of hidden states (embeddings + one per block)."""
        return self.blocks + 1

    def __str__(self) -> str:
        return (
            f"{self.name}: {self.blocks} blocks (hidden states 0..{self.blocks}), width "
            f"{self.width}, vocab {self.vocab}, {self.params / 1e6:.1f}M params, "
            f"{self.device} {self.dtype}"
        )


class Session:
    """A loaded causal LM with layer discovery, hooks, generation and cached activations.

    Build one with :meth:`load` (embedded model, HF id, folder or .gguf) or :meth:`tiny`
    (random model for tests), or wrap an existing transformers model with the constructor.

    Wrapping changes the objects you pass, in place: the model is moved to ``device`` (default
    cuda if available, else cpu), put in eval mode, and its parameters get
    ``requires_grad=False``; the tokenizer pads on the left, and gets its EOS token as pad
    token if it had none. Every forward goes through :attr:`backend`, the one seam to the
    model; hooks are attached only inside :meth:`hooks` and steered calls.

    :attr:`fingerprint` covers every parameter tensor and follows in-place edits of the
    weights (``with torch.no_grad(): p.add_(1)``): activations cached before an edit are
    not returned after it. An edit through ``p.data`` bypasses torch's version counters;
    call :meth:`refresh_fingerprint` after one.

    >>> s = Session(model, tokenizer, name="my-model")      # doctest: +SKIP
    """

    def __init__(self, model, tokenizer, name: str = "model", device: str | None = None):
        device = device or _default_device()
        self.model = model.to(device).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.backend = LocalBackend(self.model)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        self.lock = threading.RLock()  # one forward pass at a time on this model
        self._weights_version = weights_version(self.model)
        self._fingerprint = weights_fingerprint(self.model, name)
        self.directions = DirectionRegistry(self)  # shared by every widget on this session
        self.geometry = Geometry(self)  # inner products; causal whitening computed on first use
        # per text (see ``activations``); RAM held by cached activations stays within the
        # memory budget, so views that each cache their data never add up past it
        self.cache = ActivationCache(self._fingerprint,
                                     ram_limit=min(ActivationCache.RAM_LIMIT, default_budget()))
        self._edits = 0  # depth of hooks(edits=...): activations under edits skip the cache
        self.model_calls = 0
        register_live(self)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        spec: str | None = None,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        *,
        trust_remote_code: bool = False,
        verify: str = "sampled",
    ) -> Session:
        """Load the embedded model (``spec=None``), a HF id, a local folder or a .gguf file.

        The embedded GGUF is converted once into a safetensors cache (``$REPRLAB_CACHE`` or the
        user cache folder); later loads take a few seconds. ``verify="full"`` hashes every
        cached file instead of samples (see the guide's "Safety and integrity").
        """
        model, tokenizer, name = load_model(spec, dtype=dtype, trust_remote_code=trust_remote_code,
                                            verify=verify)
        return cls(model, tokenizer, name=name, device=device)

    @classmethod
    def tiny(cls, seed: int = 0, arch: str = "llama", device: str | None = "cpu") -> Session:
        """A tiny random model (4 blocks, width 64, byte tokenizer) built in memory, for tests."""
        seed = as_seed(seed)
        model, tokenizer = build_tiny(arch, seed=seed)
        return cls(model, tokenizer, name=f"tiny-{arch}-seed{seed}", device=device)

    # -- description --------------------------------------------------------------------------

    @property
    def parts(self):
        """The model's blocks, final norm and LM head, as the backend found them."""
        return self.backend.parts

    @property
    def fingerprint(self) -> str:
        """Identity of the current weights: a hash of the name, the config and every
        parameter tensor, recomputed when torch's version counters show an in-place edit."""
        if self._weights_changed():
            self.refresh_fingerprint()
        return self._fingerprint

    def _weights_changed(self) -> bool:
        return weights_version(self.model) != self._weights_version

    def refresh_fingerprint(self) -> str:
        """Recompute :attr:`fingerprint` from the weights now; when it changed, cached
        activations and reference statistics (which describe the old weights) are dropped."""
        with self.lock:
            self._weights_version = weights_version(self.model)
            new = weights_fingerprint(self.model, self.name)
            if new != self._fingerprint:
                self._fingerprint = new
                self.cache.clear()
                self.cache.fingerprint = new
                self.geometry.clear()
        return self._fingerprint

    @property
    def ref(self) -> ModelRef:
        """An immutable reference to this model (name, fingerprint, width, blocks): what
        results carry instead of the session."""
        return ModelRef(self.name, self.fingerprint, self.width, self.n_blocks)

    @property
    def n_blocks(self) -> int:
        return self.backend.n_blocks

    @property
    def layers(self) -> list[int]:
        """Valid hidden-state indices: 0 (embeddings) .. n_blocks (after the final norm)."""
        return list(range(self.n_blocks + 1))

    @property
    def width(self) -> int:
        return self.backend.width

    @property
    def context_length(self) -> int | None:
        """The most tokens the model reads at once (None when its config does not say)."""
        config = self.model.config
        for name in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    @property
    def device(self) -> torch.device:
        return self.backend.device

    @property
    def info(self) -> SessionInfo:
        p = next(self.model.parameters())
        return SessionInfo(
            name=self.name,
            blocks=self.n_blocks,
            width=self.width,
            vocab=self.backend.unembedding.shape[0],
            params=sum(q.numel() for q in self.model.parameters()),
            device=str(p.device),
            dtype=str(p.dtype).replace("torch.", ""),
        )

    def __repr__(self) -> str:
        return f"Session({self.info})"

    # -- layers and hooks ---------------------------------------------------------------------

    def check_layers(self, layers: int | Sequence[int] | None) -> tuple[int, ...]:
        """Normalise a layer spec (None = all, negative counts from the end) to sorted indices."""
        if layers is None:
            return tuple(self.layers)
        if isinstance(layers, numbers.Integral) and not isinstance(layers, bool):
            layers = [int(layers)]
        if isinstance(layers, (str, bytes, float)) or not isinstance(layers, Iterable):
            raise TypeError(f"layers must be an int such as 3, a list such as [0, 6, 12], or "
                            f"None for all, got {type(layers).__name__} {layers!r:.40}")
        n = self.n_blocks
        out = []
        for layer in layers:
            if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
                raise TypeError(f"layers must be ints such as 3 or [0, 6, 12], got "
                                f"{type(layer).__name__} {layer!r:.40}")
            layer = int(layer)
            if not -(n + 1) <= layer <= n:
                raise ValueError(
                    f"layer {layer} out of range: this model has hidden states 0..{n} "
                    f"(0 = embeddings, {n} = last block after the final norm)"
                )
            out.append(layer % (n + 1))
        if not out:
            raise ValueError("layers is empty: pass None for all layers or a list of indices")
        return tuple(sorted(set(out)))

    def site(self, spec: Site | int | str) -> Site:
        """The :class:`~reprlab.sites.Site` that ``spec`` names: a hidden-state index (one
        stream for reads and edits alike; ``n_blocks`` is after the final norm), a name such
        as ``"blocks.5.resid_post"`` or ``"final_norm"``, or a Site.

        >>> s.site(12).name, s.site(30).name          # doctest: +SKIP
        ('blocks.11.resid_post', 'final_norm')
        """
        return site(spec, self.n_blocks)

    @contextmanager
    def hooks(
        self,
        edits: Mapping[Site | int | str, EditFn] | None = None,
        reads: Mapping[Site | int | str, ReadFn] | None = None,
    ) -> Iterator[Session]:
        """Temporarily attach edits and reads at sites; always removed on exit.

        Keys are sites or hidden-state indices (see :meth:`site`): an edit
        ``fn(hidden) -> new | None`` changes the stream there, a read ``fn(hidden)`` sees it
        after any edit at the same site. Activations computed under edits are neither read
        from nor stored in the cache, and reference statistics (standardized scales, typical
        norms) ignore the edits.

        >>> with s.hooks(edits={6: lambda h: h * 0}):   # doctest: +SKIP
        ...     s.generate("Hello")
        """
        edits = {self.site(k): v for k, v in (edits or {}).items()}
        reads = {self.site(k): v for k, v in (reads or {}).items()}
        with self.lock, self.backend.attached(edits=edits, reads=reads):
            self._edits += bool(edits)
            try:
                yield self
            finally:
                self._edits -= bool(edits)

    @contextmanager
    def without_edits(self) -> Iterator[Session]:
        """Pause every edit hook of enclosing :meth:`hooks` blocks (for reference statistics
        such as the standardized scales, which must describe the unedited model)."""
        with self.lock, self.backend.edits_paused():
            depth, self._edits = self._edits, 0
            try:
                yield self
            finally:
                self._edits = depth

    # -- activations --------------------------------------------------------------------------

    def activations(
        self,
        texts: Sequence[str],
        layers: int | Sequence[int] | None = None,
        at: Position | Sequence[Position] = "last",
        *,
        batch_size: int = 32,
        progress: bool | ProgressFn | None = None,
        cache: bool = True,
        dtype: torch.dtype = torch.float32,
        memory_budget: int | str | None = None,
        copy: bool = True,
    ) -> Activations:
        """Hidden states of ``texts`` at ``layers`` (None = all), read ``at`` a position.

        ``at``: "last" (last real token), "mean" (mean over non-special tokens), an int token
        index (negative allowed), a whole word (the last token of its last occurrence; a
        warning says when a word occurs more than once), or
        a list with one such position per text.
        Repeated calls with the same texts, layers and position come from an in-memory cache;
        what is returned is a copy the caller owns (editing it in place never changes what
        later calls get), except a result held on disk (``acts.on_disk``). ``copy=False``
        returns the cache's own tensors, for callers that only read them (the kernel's own
        analyses: a copy costs about 1 ms per MB here, which a slider redraw would feel).
        ``progress``: None shows a bar for multi-batch runs, False hides it, a callable
        ``fn(done, total)`` receives batch counts. ``dtype=torch.float16`` stores the result in
        half the memory (kernel functions compute in float32 either way).
        ``memory_budget`` (bytes or e.g. ``"2GB"``; default ``$REPRLAB_MEMORY_BUDGET`` or half
        the available memory): a result larger than this streams batch by batch into a float16
        store on disk (``acts.on_disk``), with a warning, instead of running out of memory.
        """
        texts = validate_texts(texts)
        layers = self.check_layers(layers)
        at = position_key(at, len(texts))
        batch_size = as_int(batch_size, "batch_size", minimum=1)
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
        ats = list(at) if isinstance(at, tuple) else [at] * len(texts)
        shape = (len(layers), len(texts), self.width)
        with self.lock:  # one forward pass at a time; cache reads and writes stay consistent
            if self._weights_changed():  # in-place weight edits: drop what is stale
                self.refresh_fingerprint()
            cache = cache and self._edits == 0  # values under edits are never cached
            over = over_budget(memory_budget, shape, dtype)
            hit = self.cache.get(texts, ats, at, dtype, layers, copy_ok=not over) if cache \
                else None
            if hit is not None:
                return _owned(hit) if copy else hit
            found = self.cache.find(texts, ats, dtype, layers) if cache and not over else []
            missing = [i for i, f in enumerate(found) if f is None]
            if found and len(missing) < len(texts):  # run the model on the new texts only
                sub_at = tuple(ats[i] for i in missing) if isinstance(at, tuple) else at
                part = self._extract_acts([texts[i] for i in missing], layers, sub_at,
                                          batch_size, progress, dtype, None)
                block = self.cache.put(part, [ats[i] for i in missing], dtype)
                for j, i in enumerate(missing):
                    found[i] = (block, j)
                return assemble(found, texts, at, layers)
            out = disk_store_if_over(memory_budget, shape, dtype)
            acts = self._extract_acts(texts, layers, at, batch_size, progress, dtype, out)
            if cache:
                self.cache.put(acts, ats, dtype)
                return _owned(acts) if copy else acts
        return acts

    def read(self, texts: Sequence[str], sites: Sequence[Site | int | str],
             at: Position = "last", *, batch_size: int = 32) -> torch.Tensor:
        """The stream at ``sites`` (any site, named-only ones included) of ``texts`` read
        ``at`` one position: float32 values ``[sites, texts, width]``, never cached.

        >>> s.read(["Hello there"], ["blocks.29.resid_post"]).shape    # doctest: +SKIP
        torch.Size([1, 1, 576])
        """
        texts = validate_texts(texts)
        sites = tuple(self.site(x) for x in sites)
        with self.lock:
            self.model_calls += 1
            values, _ = extract(self.backend, self.tokenizer, texts, sites,
                                position_key(at, len(texts)), batch_size=batch_size,
                                pad_id=self.tokenizer.pad_token_id,
                                max_tokens=self.context_length)
        return values

    def _extract_acts(self, texts, layers, at, batch_size, progress, dtype, out) -> Activations:
        values, encoded = self._extract(texts, layers, at, batch_size, progress, dtype, out)
        return Activations(
            values=values,
            layers=layers,
            texts=tuple(texts),
            tokens=tuple(e.token for e in encoded),
            positions=tuple(e.read_at for e in encoded),
            at=at,
            source=self.ref,
            origin=weakref.ref(self),
        )

    def token_activations(
        self, text: str, layers: int | Sequence[int] | None = None, *, copy: bool = True
    ) -> Activations:
        """Hidden states of every token of one text: rows are tokens, in order.

        Equal to ``activations([text], at=i)`` for each token index ``i``, from one forward pass.
        Cached like :meth:`activations` (``copy`` as there).
        """
        validate_texts([text])
        layers = self.check_layers(layers)
        with self.lock:
            if self._weights_changed():  # in-place weight edits: drop what is stale
                self.refresh_fingerprint()
            cache = self._edits == 0
            hit = self.cache.get_tokens(text, layers) if cache else None
            if hit is not None:
                return _owned(hit) if copy else hit
            self.model_calls += 1
            values, tokens = extract_tokens(self.backend, self.tokenizer, text,
                                            tuple(self.site(x) for x in layers),
                                            max_tokens=self.context_length)
            n = len(tokens)
            acts = Activations(values, layers, (text,) * n, tuple(tokens), tuple(range(n)),
                               at="tokens", source=self.ref, origin=weakref.ref(self))
            if cache:
                self.cache.put_tokens(acts)
                return _owned(acts) if copy else acts
        return acts

    def _extract(self, texts, layers, at, batch_size, progress, dtype=torch.float32, out=None):
        n_batches = -(-len(texts) // batch_size)
        bar = None
        if callable(progress):
            report = progress
        else:
            show = progress if progress is not None else n_batches > 1
            bar = tqdm(total=n_batches, desc="activations", unit="batch", disable=not show)

            def report(done, total):
                bar.update(done - bar.n)

        self.model_calls += 1
        try:
            return extract(
                self.backend, self.tokenizer, texts, tuple(self.site(x) for x in layers), at,
                batch_size=batch_size, pad_id=self.tokenizer.pad_token_id, progress=report,
                dtype=dtype, out=out, max_tokens=self.context_length,
            )
        finally:
            if bar is not None:
                bar.close()

    @property
    def cache_hits(self) -> int:
        """Requests answered from the activation cache without running the model."""
        return self.cache.hits

    @property
    def cache_entries(self) -> int:
        """Number of cached activation blocks."""
        return self.cache.entries

    @property
    def cache_bytes(self) -> int:
        """Bytes of RAM held by cached activations (on-disk stores do not count)."""
        return self.cache.ram_bytes

    @property
    def cache_disk_bytes(self) -> int:
        """Bytes of cached activations held in on-disk stores (see ``memory_budget``)."""
        return self.cache.disk_bytes

    def clear_cache(self) -> None:
        self.cache.clear()

    # -- generation ---------------------------------------------------------------------------

    def generate(
        self,
        prompt: str,
        max_new_tokens: int = 40,
        *,
        seed: int = 0,
        temperature: float = 0.0,
        top_p: float = 1.0,
        steer=None,
    ) -> str:
        """Continue ``prompt``; greedy when ``temperature == 0``, seeded sampling otherwise.

        ``steer``: a :class:`~reprlab.steering.Steer` (or a list) applied while generating.
        Returns only the new text; the same seed gives the same text, and the global RNG is
        left untouched.

        >>> s.generate("The capital of France is", max_new_tokens=5)   # doctest: +SKIP
        ' Paris.'
        """
        return "".join(t.text for t in self.stream(
            prompt, max_new_tokens=max_new_tokens, seed=seed, temperature=temperature,
            top_p=top_p, steer=steer,
        ))

    def stream(self, prompt: str, max_new_tokens: int = 40, **options):
        """Like :meth:`generate` but yields :class:`~reprlab.steering.Token` objects as they
        are produced; pass ``should_stop=callable`` to end early (hooks are always removed)."""
        return stream(self, prompt, max_new_tokens=max_new_tokens, **options)


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _owned(acts: Activations) -> Activations:
    """A copy of cached activations for the caller (one on disk is shared, read it only)."""
    return acts if acts.on_disk else acts.copy()


__all__ = ["Session", "SessionInfo"]
