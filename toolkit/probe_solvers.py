"""Batched solvers behind :func:`reprlab.probes.probe_curve`.

Every (layer, fold, label variant, class) problem is one column of a single tensor program:
no Python loop over layers. Shapes: ``L`` layers, ``N`` examples, ``D`` width, ``F`` folds
(the last one trains on everything), ``S`` label variants (real + shuffled), ``K`` outputs.

Features are standardized per fold with the training rows' statistics. Rather than copy the
data once per fold, the standardization is folded into the weights:
``((x - mu_f) / sd_f) @ w = x @ (w / sd_f) - (mu_f / sd_f) @ w``.

Memory: layers are processed in consecutive chunks whose working memory fits a quarter of the
memory budget (``memory_budget=``, default ``$REPRLAB_MEMORY_BUDGET`` or half the available
memory; see :func:`layer_chunks`). Each layer's numbers never depend on the others, so any
chunking gives exactly the same result. Values may be stored as float16 (converted a chunk at a
time); fitting runs in float32, or float64 for float64 input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from .store import default_budget, parse_bytes

#: Largest working set of one layer chunk: beyond it, batching more layers gains no speed.
MAX_CHUNK_BYTES = 1 << 30


@dataclass(frozen=True)
class FoldStats:
    center: torch.Tensor  # [L, 1, D] mean over all rows (data is centered on it first)
    mu: torch.Tensor      # [L, F, D] training-row mean of the centered data, per fold
    sd: torch.Tensor      # [L, F, D] training-row standard deviation (1 for constant features)
    n: torch.Tensor       # [F] training rows per fold

    def layers(self, chunk: slice) -> FoldStats:
        """The statistics of a range of layers."""
        return FoldStats(self.center[chunk], self.mu[chunk], self.sd[chunk], self.n)


@dataclass(frozen=True)
class Fit:
    outputs: torch.Tensor  # [L, F, S, N, K] decision values for every row
    weights: torch.Tensor  # [L, F, S, K, D] in raw activation space
    bias: torch.Tensor     # [L, F, S, K]

    @staticmethod
    def cat(fits: list[Fit]) -> Fit:
        """Layer chunks' fits joined along the layer axis, always contiguous (a memory layout
        that depended on the number of chunks could change later reductions' last bits)."""
        def join(parts):
            return (parts[0] if len(parts) == 1 else torch.cat(parts)).contiguous()

        return Fit(*(join([getattr(f, name) for f in fits])
                     for name in ("outputs", "weights", "bias")))


def layer_chunks(n_layers: int, bytes_per_layer: int,
                 memory_budget: int | str | None = None) -> list[slice]:
    """Consecutive layer ranges whose working memory fits a quarter of the memory budget
    (at most :data:`MAX_CHUNK_BYTES`); at least one layer per chunk.

    >>> layer_chunks(5, bytes_per_layer=100, memory_budget=800)
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    budget = default_budget() if memory_budget is None else parse_bytes(memory_budget)
    size = max(1, min(n_layers, min(budget // 4, MAX_CHUNK_BYTES) // max(bytes_per_layer, 1)))
    return [slice(start, min(start + size, n_layers)) for start in range(0, n_layers, size)]


def logistic_bytes(n: int, d: int, columns: int) -> int:
    """Working memory of :func:`fit_logistic` per layer: ``n`` rows, ``d`` features, ``columns``
    = folds x label variants x outputs."""
    return 4 * (2 * n * d + 6 * n * columns + 12 * d * columns) + 8 * 6 * d * d


def ridge_bytes(n: int, d: int, folds: int, targets: int, dual: bool) -> int:
    """Working memory of :func:`fit_ridge` per layer (primal: ``D x D`` systems; dual:
    ``N x N``)."""
    shared = 16 * n * d + 20 * folds * targets * n + 24 * folds * targets * d
    return shared + (8 * folds * (2 * n * d + 3 * n * n) if dual else 24 * folds * d * d)


def work_dtype(values: torch.Tensor) -> torch.dtype:
    """float64 for float64 input, else float32 (float16/bfloat16 storage is fitted in float32)."""
    return torch.float64 if values.dtype == torch.float64 else torch.float32


def lmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` over a leading layer axis, one product per layer (``b`` may lack the axis).

    Batched BLAS rounds a matrix's product differently depending on how many sit in the batch
    (and on the output's memory alignment): one product per layer, each into its own buffer,
    keeps every layer's result independent of the chunk it is in.
    """
    if b.dim() < a.dim():
        return torch.stack([x @ b for x in a])
    return torch.stack([x @ y for x, y in zip(a, b)])


def fold_standardization(values: torch.Tensor, train: torch.Tensor, *,
                         memory_budget: int | str | None = None) -> FoldStats:
    """Per-fold training mean and standard deviation (population, like StandardScaler)."""
    L, N, D = values.shape
    parts = [_fold_standardization(values[chunk], train)
             for chunk in layer_chunks(L, 28 * N * D, memory_budget)]
    return FoldStats(*(torch.cat([getattr(p, name) for p in parts])
                       for name in ("center", "mu", "sd")), n=train.sum(1))


def _fold_standardization(values: torch.Tensor, train: torch.Tensor) -> FoldStats:
    x = values.double()
    center = x.mean(1, keepdim=True)
    xc = x - center
    del x
    w = train.double() / train.sum(1, keepdim=True)            # [F, N]
    mu = lmm(xc.transpose(1, 2), w.T).transpose(1, 2)       # [L, F, D]
    var = (lmm((xc * xc).transpose(1, 2), w.T).transpose(1, 2) - mu * mu).clamp_min(0)
    # A feature whose spread is below float32 resolution of its magnitude is constant: scale 1.
    raw_sq = var + (mu + center) ** 2
    sd = torch.where(var > 1e-10 * raw_sq + 1e-30, var.sqrt(), torch.ones_like(var))
    dt = work_dtype(values)
    return FoldStats(center.to(dt), mu.to(dt), sd.to(dt), train.sum(1))


def _in_chunks(fit_chunk: Callable[[torch.Tensor, FoldStats], Fit], values: torch.Tensor,
               stats: FoldStats, bytes_per_layer: int, memory_budget) -> Fit:
    """Run ``fit_chunk(values, stats)`` on each layer chunk (as float32/64) and join the fits."""
    dt = work_dtype(values)
    return Fit.cat([fit_chunk(values[chunk].to(dt), stats.layers(chunk))
                    for chunk in layer_chunks(values.shape[0], bytes_per_layer, memory_budget)])


def _columns(t: torch.Tensor, S: int, K: int) -> torch.Tensor:
    """Spread a per-fold tensor ``[L, F, D]`` to per-column ``[L, D, F*S*K]``."""
    L, F, D = t.shape
    # contiguous: an operand's memory layout can change a matmul's last bits, and a
    # transposed view's layout would depend on the number of layers in the chunk
    cols = t[:, :, None, None, :].expand(L, F, S, K, D).reshape(L, F * S * K, D)
    return cols.transpose(1, 2).contiguous()


def fit_logistic(
    values: torch.Tensor,
    targets: np.ndarray,
    n_classes: int,
    train: torch.Tensor,
    stats: FoldStats,
    *,
    C: float,
    max_iter: int = 300,
    tol: float = 1e-7,
    memory_budget: int | str | None = None,
) -> Fit:
    """L2 logistic regression (scikit-learn's objective ``0.5|w|^2 + C * sum(loss)``).

    Solved by accelerated, preconditioned gradient descent with adaptive restart, until each
    layer's Newton decrement is below ``tol`` (checked every 10 steps; a converged layer stops
    moving). The preconditioner is Böhning's curvature bound ``c * Z'Z / n + lambda`` (``c`` =
    1/4 for two classes, 1/2 for more), computed once per layer from all rows, applied as a
    matmul. Layers are fitted in chunks that fit the memory budget.
    """
    if C <= 0:
        raise ValueError(f"C must be > 0, got {C}")
    L, N, D = values.shape
    K = 1 if n_classes == 2 else n_classes
    per_layer = logistic_bytes(N, D, train.shape[0] * targets.shape[0] * K)

    def fit_chunk(chunk, chunk_stats):
        return _fit_logistic(chunk, targets, n_classes, train, chunk_stats, C=C,
                             max_iter=max_iter, tol=tol)

    return _in_chunks(fit_chunk, values, stats, per_layer, memory_budget)


def _fit_logistic(values, targets, n_classes, train, stats, *, C, max_iter, tol) -> Fit:
    L, N, D = values.shape
    F, S = train.shape[0], targets.shape[0]
    K = 1 if n_classes == 2 else n_classes
    M = F * S * K
    dev, dt = values.device, values.dtype
    xc = (values - stats.center).contiguous()

    y = torch.as_tensor(targets, device=dev)
    Y = y[..., None].to(dt) if K == 1 else torch.nn.functional.one_hot(y, K).to(dt)  # [S,N,K]
    # Targets and row weights broadcast over the columns (folds x variants x classes) instead
    # of being copied out to [N, M]: memory linear in N + M, not N x M, for many classes.
    y_cols = Y.permute(1, 0, 2)[:, None]                                 # [N, 1, S, K]
    row_w = (train.to(dt) / stats.n[:, None].to(dt)).T[:, :, None, None]  # [N, F, 1, 1]
    lam = (1.0 / (C * stats.n.to(dt)))[:, None, None].expand(F, S, K).reshape(M)
    inv_sd = _columns(1.0 / stats.sd, S, K)                             # [L, D, M]
    mu = _columns(stats.mu, S, K)
    mu_sd = mu * inv_sd

    c = 0.25 if K == 1 else 0.5
    p_shared, p_inv = _preconditioner(xc, stats, c, float(lam.min()))   # [L, D, D] each
    # The shared preconditioner bounds the all-rows problem; each fold's curvature may exceed
    # it by a factor, found by power iteration, which shrinks that fold's steps.
    kappa = _fold_bound_factor(xc, stats, p_shared, p_inv, train, c, 1.0 / (C * stats.n.to(dt)))
    step_scale = (1.0 / kappa)[:, :, None, None].expand(L, F, S, K).reshape(L, 1, M)

    def logits_of(W, b):
        return lmm(xc, W * inv_sd) - (mu_sd * W).sum(1, keepdim=True) + b[:, None, :]

    def probs(z):
        if K == 1:  # not torch.sigmoid: its last bits depend on where a value sits in memory
            return 1 / (1 + torch.exp(-z))
        return torch.softmax(z.reshape(L, N, F * S, K), -1).reshape(L, N, M)

    W = torch.zeros(L, D, M, device=dev, dtype=dt)
    b = torch.zeros(L, M, device=dev, dtype=dt)
    W_y, b_y = W, b
    t = torch.ones(L, M, device=dev, dtype=dt)
    moving = torch.ones(L, 1, device=dev, dtype=torch.bool)  # layers not yet converged
    for it in range(max_iter):
        p = probs(logits_of(W_y, b_y)).view(L, N, F, S, K)
        r = ((p - y_cols) * row_w).reshape(L, N, M)                     # [L, N, M]
        del p
        r_sum = r.sum(1)
        g_w = inv_sd * (lmm(xc.transpose(1, 2), r) - mu * r_sum[:, None, :]) + lam * W_y
        step_w = lmm(p_inv, g_w) * step_scale
        W_new, b_new = W_y - step_w, b_y - r_sum / c
        # adaptive restart (O'Donoghue & Candes): drop momentum where it points uphill
        uphill = ((g_w * (W_new - W)).sum(1) + r_sum * (b_new - b)) > 0
        t_new = (1 + torch.sqrt(1 + 4 * t * t)) / 2
        beta = torch.where(uphill, torch.zeros_like(t), (t - 1) / t_new)
        t = torch.where(uphill, torch.ones_like(t), t_new)
        W_y = W_new + beta[:, None, :] * (W_new - W)
        b_y = b_new + beta * (b_new - b)
        if not bool(moving.all()):  # converged layers keep their weights
            W_new = torch.where(moving[:, :, None], W_new, W)
            b_new = torch.where(moving, b_new, b)
        W, b = W_new, b_new
        if it % 10 == 9:
            decrement = (g_w * step_w).sum(1) + r_sum * r_sum / c         # [L, M]
            moving = moving & (decrement.amax(1, keepdim=True) >= tol)
            if not bool(moving.any()):
                break

    outputs = logits_of(W, b).reshape(L, N, F, S, K).permute(0, 2, 3, 1, 4)
    w_raw = W * inv_sd
    bias = b - (mu_sd * W).sum(1) - (stats.center.transpose(1, 2) * w_raw).sum(1)
    return Fit(
        outputs=outputs,
        weights=w_raw.reshape(L, D, F, S, K).permute(0, 2, 3, 4, 1),
        bias=bias.reshape(L, F, S, K),
    )


def _fold_bound_factor(xc, stats, p_shared, p_inv, train, c, lam, iters=12) -> torch.Tensor:
    """Per (layer, fold) factor ``k`` with ``P_fold <= k * P_shared``, by power iteration.

    ``P_fold = c * Z_f'Z_f / n_f + lam_f``; returns ``[L, F]``, at least 1, with a 10% margin.
    """
    L, N, D = xc.shape
    F = train.shape[0]
    inv_sd = (1.0 / stats.sd).transpose(1, 2).contiguous()    # [L, D, F]
    mu_sd = stats.mu.transpose(1, 2) * inv_sd
    row_w = (train.to(xc.dtype) / stats.n[:, None].to(xc.dtype)).T  # [N, F]
    gen = torch.Generator(device="cpu").manual_seed(0)  # one start for every layer, so that
    v = torch.randn(1, D, F, generator=gen, dtype=xc.dtype).to(xc.device).repeat(L, 1, 1)
    # a layer's factor does not depend on the layers fitted beside it

    def p_fold(v):
        z = lmm(xc, v * inv_sd) - (mu_sd * v).sum(1, keepdim=True)   # [L, N, F]
        r = z * row_w
        xtr = lmm(xc.transpose(1, 2), r) - stats.mu.transpose(1, 2) * r.sum(1, keepdim=True)
        return c * inv_sd * xtr + lam * v

    for _ in range(iters):
        v = lmm(p_inv, p_fold(v))
        v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)
    pf = (v * p_fold(v)).sum(1)
    pa = (v * lmm(p_shared, v)).sum(1)
    return (1.1 * pf / pa).clamp_min(1.0)


def _preconditioner(xc, stats: FoldStats, c: float, lam: float):
    """``P = c * corr + lam * I`` per layer from the all-rows fold (the last one), and P^-1."""
    L, N, D = xc.shape
    sd = stats.sd[:, -1].double()
    mu = stats.mu[:, -1].double()
    gram = lmm(xc.transpose(1, 2), xc).double() / N - mu[:, :, None] * mu[:, None, :]
    corr = gram / (sd[:, :, None] * sd[:, None, :])
    eye = torch.eye(D, dtype=torch.float64, device=xc.device)
    p = (c * corr + lam * eye).contiguous()
    return p.to(xc.dtype), torch.cholesky_inverse(torch.linalg.cholesky(p)).to(xc.dtype)


def fit_ridge(
    values: torch.Tensor,
    targets: np.ndarray,
    train: torch.Tensor,
    stats: FoldStats,
    *,
    ridge: float,
    form: Literal["auto", "primal", "dual"] = "auto",
    memory_budget: int | str | None = None,
) -> Fit:
    """Ridge regression ``|y - Zw - b|^2 + ridge |w|^2`` (scikit-learn's alpha), closed form.

    ``form="primal"`` solves one ``D x D`` system per (layer, fold); ``"dual"`` one ``N x N``
    kernel system per (layer, fold), ``w = Z'(ZZ' + ridge I)^-1 y``; ``"auto"`` takes the
    dual when there are fewer examples than features (``N < D``). Both are solved by Cholesky
    in float64, for chunks of layers that fit the memory budget.
    """
    if ridge <= 0:
        raise ValueError(f"ridge must be > 0, got {ridge}")
    if form not in ("auto", "primal", "dual"):
        raise ValueError(f"form must be 'auto', 'primal' or 'dual', got {form!r}")
    L, N, D = values.shape
    F, S = train.shape[0], targets.shape[0]
    dual = form == "dual" or (form == "auto" and N < D)
    solve = _ridge_dual if dual else _ridge_primal
    per_layer = ridge_bytes(N, D, F, S, dual)

    def fit_chunk(chunk, chunk_stats):
        return _ridge_fit(chunk, targets, train, chunk_stats, ridge, solve)

    return _in_chunks(fit_chunk, values, stats, per_layer, memory_budget)


def _ridge_fit(values, targets, train, stats: FoldStats, ridge: float, solve) -> Fit:
    """Standardized-feature weights from ``solve``, mapped back to raw activation space."""
    dev = values.device
    xc = (values - stats.center).contiguous()
    y = torch.as_tensor(targets, device=dev, dtype=torch.float64)          # [S, N]
    n = stats.n.double()                                                   # [F]
    tw = train.double()                                                    # [F, N]
    y_mean = (tw[:, None, :] * y[None]).sum(-1) / n[:, None]               # [F, S]
    W = solve(xc, y - y_mean[:, :, None], train, stats, ridge)            # [L, F, D, S]
    mu, sd = stats.mu.double(), stats.sd.double()
    xc = xc.double()
    w_raw = W / sd[..., None]
    offset = y_mean[None] - (mu[..., None] * w_raw).sum(2)                 # [L, F, S]
    L, F, D, S = w_raw.shape
    outputs = lmm(xc, w_raw.transpose(1, 2).reshape(L, D, F * S))          # [L, N, F*S]
    outputs = outputs.reshape(L, -1, F, S).permute(0, 2, 3, 1) + offset[..., None]
    bias = offset - (stats.center.double().transpose(1, 2)[:, None] * w_raw).sum(2)
    dt = values.dtype
    return Fit(
        outputs=outputs[..., None].to(dt),
        weights=w_raw.permute(0, 1, 3, 2)[:, :, :, None, :].to(dt),
        bias=bias[..., None].to(dt),
    )


def _ridge_primal(xc, resid, train, stats: FoldStats, ridge: float) -> torch.Tensor:
    """``(Z'Z + ridge I)^-1 Z'y`` per (layer, fold): ``[L, F, D, S]``. ``resid``: ``[F, S, N]``
    targets minus the fold's training mean."""
    grams, rhs = [], []
    for f in range(train.shape[0]):
        # Standardize the fold's training rows, then take their Gram directly: subtracting
        # mean outer products instead would cancel catastrophically on outlier dimensions.
        rows = train[f]
        z = (xc[:, rows] - stats.mu[:, f, None]) / stats.sd[:, f, None]    # [L, n_f, D]
        grams.append(lmm(z.transpose(1, 2), z))
        rhs.append(lmm(z.transpose(1, 2), resid[f][:, rows].T.to(z.dtype)))
    a = torch.stack(grams, 1).double()                                     # [L, F, D, D]
    del grams
    a.diagonal(dim1=-2, dim2=-1).add_(ridge)
    rhs = torch.stack(rhs, 1).double()                                     # [L, F, D, S]
    return torch.cholesky_solve(rhs, torch.linalg.cholesky(a))


def _ridge_dual(xc, resid, train, stats: FoldStats, ridge: float) -> torch.Tensor:
    """``Z'(ZZ' + ridge I)^-1 y`` per (layer, fold), the same weights as the primal form from
    an ``N x N`` kernel: rows outside the fold's training set are zeroed, so they add nothing
    and their dual coefficients are 0. Returns ``[L, F, D, S]``."""
    mask = train.double()[None, :, :, None]                               # [1, F, N, 1]
    z = (xc.double()[:, None] - stats.mu.double()[:, :, None]) / stats.sd.double()[:, :, None]
    z = z * mask                                                           # [L, F, N, D]
    kernel = lmm(z, z.transpose(-1, -2))                                   # [L, F, N, N]
    kernel.diagonal(dim1=-2, dim2=-1).add_(ridge)
    rhs = (resid.transpose(1, 2)[None] * mask).expand(z.shape[0], -1, -1, -1)  # [L, F, N, S]
    coef = torch.cholesky_solve(rhs.contiguous(), torch.linalg.cholesky(kernel))
    return lmm(z.transpose(-1, -2), coef)
