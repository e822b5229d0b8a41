"""When does whitened geometry help a sentiment direction? Measured against human valence.

    python -m bench.whitened_valence [--words 400] [--layers 2 4 ... 30]

Human valence: VADER's lexicon (vaderSentiment, the `dev` extra), the mean of ten human
raters per word on -4..+4 (Hutto & Gilbert, 2014); nothing here is fitted to it. Words: the
lexicon's lowercase alphabetic entries that are one in-sentence token (" word") of the model's
tokenizer, a seeded sample of ``--words``, each read at its own (last) token in the carrier
"The next word is {word}".

Directions at each layer, both from the built-in sentiment minimal pairs (all 240, last token):
the mean difference (positive - negative) and the probe (logistic, C = 0.01, weights in raw
activation space, oriented towards positive). For each inner product the words are projected
on the direction (from the reference mean, as the views do) and the Spearman correlation of the
projections with the human valence is printed.
"""

from __future__ import annotations

import argparse

import numpy as np

INNERS = ("euclidean", "standardized", "whitened", "causal")


def valence_words(tokenizer, n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    lexicon = SentimentIntensityAnalyzer().lexicon
    words = sorted(w for w in lexicon if w.isalpha() and w.islower() and len(w) >= 3
                   and len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) == 1)
    pick = np.random.default_rng(seed).permutation(len(words))[:n]
    chosen = [words[i] for i in sorted(pick)]
    return chosen, np.array([lexicon[w] for w in chosen], dtype=np.float64)


def spearman(x, y) -> float:
    from reprlab.steer_eval import _pearson, _ranks

    return _pearson(_ranks(np.asarray(x)), _ranks(np.asarray(y)))


def measure(session, layers, n_words: int = 400, seed: int = 0) -> dict:
    """``{(method, inner): [rho per layer]}`` and the words used."""
    from reprlab import Direction, datasets, probe_curve
    from reprlab.geometry import project

    words, valence = valence_words(session.tokenizer, n_words, seed)
    acts = session.activations([f"The next word is {w}" for w in words], layers=layers)
    data = datasets.load("sentiment")
    train = session.activations(list(data.texts), layers=layers)
    labels = np.asarray(data.labels)
    pos = train.select(rows=np.flatnonzero(labels == "positive"))
    neg = train.select(rows=np.flatnonzero(labels == "negative"))
    curve = probe_curve(train, list(data.labels), groups=data.groups, control=False)
    out = {"words": words, "valence": valence, "probe_accuracy": curve.scores}
    for layer in layers:
        mean_diff = Direction.mean_difference(pos, neg, layer, name=f"md@{layer}")
        probe = Direction.from_probe(curve, layer)
        if probe.info["positive"] != "positive":
            probe = Direction(probe.name, -probe.vector, layer, method="probe",
                              source=probe.source)
        for method, d in (("mean_difference", mean_diff), ("probe", probe)):
            for inner in INNERS:
                p = project(session, d, acts, inner, layer, center=True).cpu().numpy()
                out.setdefault((method, inner), []).append(spearman(p, valence))
    return out


def main(argv=None) -> None:
    from reprlab import Session

    parser = argparse.ArgumentParser()
    parser.add_argument("--words", type=int, default=400)
    parser.add_argument("--layers", type=int, nargs="+", default=list(range(1, 31)))
    args = parser.parse_args(argv)
    s = Session.load()
    out = measure(s, args.layers, args.words)
    print(f"{len(out['words'])} VADER words (human valence -4..4), Spearman rho of the "
          "projection with valence:")
    print("layer " + " ".join(f"{m[:5]}:{i[:5]:>6s}" for m in ("mean_difference", "probe")
                              for i in INNERS))
    for j, layer in enumerate(args.layers):
        print(f"{layer:5d} " + " ".join(f"{out[(m, i)][j]:+12.2f}"
                                        for m in ("mean_difference", "probe") for i in INNERS))


if __name__ == "__main__":
    main()
