"""Batched solvers behind :func:`reprlab.probes.probe_curve`.

Every (layer, fold, label variant, class) problem is one column of a single tensor program:
no Python loop over layers. Shapes: ``L`` layers, ``N`` examples, ``D`` width, ``F`` folds
(the last one trains on everything), ``S`` label variants (real + shuffled), ``K`` outputs.

Features are standardized per fold with the training rows' statistics. Rather than copy the
data once per fold, the standardization is folded into the weights:
``((x - mu_f) / sd_f) @ w = x @ (w / sd_f) - (mu_f / sd_f) @ w``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class FoldStats:
    center: torch.Tensor  # [L, 1, D] mean over all rows (data is centered on it first)
    mu: torch.Tensor      # [L, F, D] training-row mean of the centered data, per fold
    sd: torch.Tensor      # [L, F, D] training-row standard deviation (1 for constant features)
    n: torch.Tensor       # [F] training rows per fold


@dataclass(frozen=True)
class Fit:
    outputs: torch.Tensor  # [L, F, S, N, K] decision values for every row
    weights: torch.Tensor  # [L, F, S, K, D] in raw activation space
    bias: torch.Tensor     # [L, F, S, K]


def fold_standardization(values: torch.Tensor, train: torch.Tensor) -> FoldStats:
    """Per-fold training mean and standard deviation (population, like StandardScaler)."""
    x = values.double()
    center = x.mean(1, keepdim=True)
    xc = x - center
    w = train.double() / train.sum(1, keepdim=True)            # [F, N]
    mu = torch.einsum("fn,lnd->lfd", w, xc)
    var = (torch.einsum("fn,lnd->lfd", w, xc * xc) - mu * mu).clamp_min(0)
    # A feature whose spread is below float32 resolution of its magnitude is constant: scale 1.
    raw_sq = var + (mu + center) ** 2
    sd = torch.where(var > 1e-10 * raw_sq + 1e-30, var.sqrt(), torch.ones_like(var))
    f32 = values.dtype
    return FoldStats(center.to(f32), mu.to(f32), sd.to(f32), train.sum(1))


def _columns(t: torch.Tensor, S: int, K: int) -> torch.Tensor:
    """Spread a per-fold tensor ``[L, F, D]`` to per-column ``[L, D, F*S*K]``."""
    L, F, D = t.shape
    return t[:, :, None, None, :].expand(L, F, S, K, D).reshape(L, F * S * K, D).transpose(1, 2)


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
) -> Fit:
    """L2 logistic regression (scikit-learn's objective ``0.5|w|^2 + C * sum(loss)``).

    Solved by accelerated, preconditioned gradient descent with adaptive restart. The
    preconditioner is Böhning's curvature bound ``c * Z'Z / n + lambda`` (``c`` = 1/4 for two
    classes, 1/2 for more), computed once per layer from all rows and applied as a matmul.
    """
    if C <= 0:
        raise ValueError(f"C must be > 0, got {C}")
    L, N, D = values.shape
    F, S = train.shape[0], targets.shape[0]
    K = 1 if n_classes == 2 else n_classes
    M = F * S * K
    dev, dt = values.device, values.dtype
    xc = (values - stats.center).contiguous()

    y = torch.as_tensor(targets, device=dev)
    Y = y[..., None].to(dt) if K == 1 else torch.nn.functional.one_hot(y, K).to(dt)  # [S,N,K]
    y_cols = Y.permute(1, 0, 2)[:, None].expand(N, F, S, K).reshape(N, M)
    row_w = (train.to(dt) / stats.n[:, None].to(dt)).T                  # [N, F]
    row_w = row_w[:, :, None, None].expand(N, F, S, K).reshape(N, M)
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
        return xc @ (W * inv_sd) - (mu_sd * W).sum(1, keepdim=True) + b[:, None, :]

    def probs(z):
        if K == 1:
            return torch.sigmoid(z)
        return torch.softmax(z.reshape(L, N, F * S, K), -1).reshape(L, N, M)

    W = torch.zeros(L, D, M, device=dev, dtype=dt)
    b = torch.zeros(L, M, device=dev, dtype=dt)
    W_y, b_y = W, b
    t = torch.ones(L, M, device=dev, dtype=dt)
    for it in range(max_iter):
        r = (probs(logits_of(W_y, b_y)) - y_cols) * row_w               # [L, N, M]
        r_sum = r.sum(1)
        g_w = inv_sd * (xc.transpose(1, 2) @ r - mu * r_sum[:, None, :]) + lam * W_y
        step_w = (p_inv @ g_w) * step_scale
        W_new, b_new = W_y - step_w, b_y - r_sum / c
        # adaptive restart (O'Donoghue & Candes): drop momentum where it points uphill
        uphill = ((g_w * (W_new - W)).sum(1) + r_sum * (b_new - b)) > 0
        t_new = (1 + torch.sqrt(1 + 4 * t * t)) / 2
        beta = torch.where(uphill, torch.zeros_like(t), (t - 1) / t_new)
        t = torch.where(uphill, torch.ones_like(t), t_new)
        W_y = W_new + beta[:, None, :] * (W_new - W)
        b_y = b_new + beta * (b_new - b)
        W, b = W_new, b_new
        if it % 10 == 9:
            decrement = (g_w * step_w).sum(1) + r_sum * r_sum / c
            if float(decrement.max()) < tol:
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
    inv_sd = (1.0 / stats.sd).transpose(1, 2)                 # [L, D, F]
    mu_sd = stats.mu.transpose(1, 2) * inv_sd
    row_w = (train.to(xc.dtype) / stats.n[:, None].to(xc.dtype)).T  # [N, F]
    gen = torch.Generator(device="cpu").manual_seed(0)
    v = torch.randn(L, D, F, generator=gen, dtype=xc.dtype).to(xc.device)

    def p_fold(v):
        z = xc @ (v * inv_sd) - (mu_sd * v).sum(1, keepdim=True)   # [L, N, F]
        r = z * row_w
        xtr = xc.transpose(1, 2) @ r - stats.mu.transpose(1, 2) * r.sum(1, keepdim=True)
        return c * inv_sd * xtr + lam * v

    for _ in range(iters):
        v = p_inv @ p_fold(v)
        v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)
    pf = (v * p_fold(v)).sum(1)
    pa = (v * (p_shared @ v)).sum(1)
    return (1.1 * pf / pa).clamp_min(1.0)


def _preconditioner(xc, stats: FoldStats, c: float, lam: float):
    """``P = c * corr + lam * I`` per layer from the all-rows fold (the last one), and P^-1."""
    L, N, D = xc.shape
    sd = stats.sd[:, -1].double()
    mu = stats.mu[:, -1].double()
    gram = (xc.transpose(1, 2) @ xc).double() / N - mu[:, :, None] * mu[:, None, :]
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
) -> Fit:
    """Ridge regression ``|y - Zw - b|^2 + ridge |w|^2`` (scikit-learn's alpha), closed form.

    One Gram matrix per (layer, fold), all layers batched; solved by Cholesky in float64.
    """
    if ridge <= 0:
        raise ValueError(f"ridge must be > 0, got {ridge}")
    L, N, D = values.shape
    F = train.shape[0]
    dev = values.device
    xc = (values - stats.center).contiguous()
    y = torch.as_tensor(targets, device=dev, dtype=torch.float64)          # [S, N]
    n = stats.n.double()                                                   # [F]
    tw = train.double()                                                    # [F, N]
    y_mean = (tw[:, None, :] * y[None]).sum(-1) / n[:, None]               # [F, S]
    grams, rhs = [], []
    for f in range(F):
        # Standardize the fold's training rows, then take their Gram directly: subtracting
        # mean outer products instead would cancel catastrophically on outlier dimensions.
        rows = train[f]
        z = (xc[:, rows] - stats.mu[:, f, None]) / stats.sd[:, f, None]    # [L, n_f, D]
        grams.append(z.transpose(1, 2) @ z)
        resid = (y[:, rows] - y_mean[f, :, None]).to(z.dtype)              # [S, n_f]
        rhs.append(torch.einsum("lnd,sn->lds", z, resid))
    a = torch.stack(grams, 1).double()                                     # [L, F, D, D]
    a.diagonal(dim1=-2, dim2=-1).add_(ridge)
    rhs = torch.stack(rhs, 1).double()                                     # [L, F, D, S]
    W = torch.cholesky_solve(rhs, torch.linalg.cholesky(a))               # [L, F, D, S]
    mu, sd = stats.mu.double(), stats.sd.double()
    xc = xc.double()
    w_raw = W / sd[..., None]
    offset = y_mean[None] - (mu[..., None] * w_raw).sum(2)                 # [L, F, S]
    outputs = torch.einsum("lnd,lfds->lfsn", xc, w_raw) + offset[..., None]
    bias = offset - (stats.center.double().transpose(1, 2)[:, None] * w_raw).sum(2)
    f32 = values.dtype
    return Fit(
        outputs=outputs[..., None].to(f32),
        weights=w_raw.permute(0, 1, 3, 2)[:, :, :, None, :].to(f32),
        bias=bias[..., None].to(f32),
    )
