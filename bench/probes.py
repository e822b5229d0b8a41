"""probe_curve vs a scikit-learn per-layer loop on the same activations and folds.

Run: ``.venv/bin/python -m bench.probes`` (``--quick`` for a seconds-long smoke run).
Task: sentiment of 1,000 review sentences with 15% of labels flipped (so not trivially
separable), read at the last token of the embedded model, all 31 hidden states, 5 folds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from reprlab import Session, datasets, probe_curve

from .common import report

PREFIXES = ("", "Honestly, ", "I think ", "To be fair, ", "Well, ")


def noisy_sentiment(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    data = datasets.load("sentiment")
    texts, labels = [], []
    for prefix in PREFIXES:
        for text, label in zip(data.texts, data.labels):
            texts.append(prefix + (text[0].lower() + text[1:] if prefix else text))
            labels.append(int(label == "positive"))
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(texts))[:n]
    y = np.array(labels)[pick]
    flip = rng.random(n) < 0.15
    return [texts[i] for i in pick], np.where(flip, 1 - y, y)


def sklearn_loop(values: torch.Tensor, y: np.ndarray, fold_ids: np.ndarray, C: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scores = []
    for layer in range(values.shape[0]):
        X = values[layer].numpy()
        fold_scores = []
        for f in range(fold_ids.max() + 1):
            tr, te = fold_ids != f, fold_ids == f
            scaler = StandardScaler().fit(X[tr])
            model = LogisticRegression(C=C, max_iter=2000).fit(scaler.transform(X[tr]), y[tr])
            fold_scores.append(model.score(scaler.transform(X[te]), y[te]))
        scores.append(np.mean(fold_scores))
    return np.array(scores)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--C", type=float, default=0.01)
    parser.add_argument("--quick", action="store_true", help="tiny model, 120 examples")
    args = parser.parse_args(argv)
    session = Session.tiny() if args.quick else Session.load()
    if args.quick:
        args.examples = 120
    texts, y = noisy_sentiment(args.examples)
    acts = session.activations(texts, progress=not args.quick)

    probe_curve(acts, y, C=args.C, control=False)  # warm-up (allocations, MKL threads)
    start = time.perf_counter()
    curve = probe_curve(acts, y, C=args.C, control=False)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    with_control = probe_curve(acts, y, C=args.C)  # default: 100 shuffles, max-over-layers test
    t_control = time.perf_counter() - start
    start = time.perf_counter()
    ref = sklearn_loop(acts.values.cpu(), y, curve.fold_ids, args.C)
    t_sklearn = time.perf_counter() - start
    results = {
        "layers x examples x folds": f"{len(acts.layers)} x {len(y)} x 5",
        "sklearn loop s": t_sklearn,
        "probe_curve s": t_ours,
        "speed-up without control (target >= 5)": t_sklearn / t_ours,
        "probe_curve + 100 shuffles (permutation test) s": t_control,
        "speed-up with the permutation test (target >= 10)": t_sklearn / t_control,
        "max |accuracy - sklearn| (target <= 0.02)": float(np.abs(curve.scores - ref).max()),
        "best layer / accuracy / control / corrected p": (
            f"{with_control.best_layer} / {with_control.scores.max():.3f} / "
            f"{with_control.control[with_control.best_layer_index]:.3f} / "
            f"{with_control.p_value:.4f}"
        ),
    }
    report(f"probes on {session.info}", results)
    return results


if __name__ == "__main__":
    main()
