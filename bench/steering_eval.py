"""Steering judged on the built-in neutral prompts, beside an outside lexicon (issue 21).

    python -m bench.steering_eval [--tokens 20] [--alphas -0.5 -0.25 0.25 0.5]

Prints the effect of each alpha with its 95% bootstrap interval over prompts, per kind of
prompt, and the agreement of the project's judge with VADER (vaderSentiment, the `dev`
extra), a published lexicon not fitted here. The notebook 04_steering.ipynb runs the same
recipe at alpha +-0.25.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def vader_scores(texts_by_alpha) -> np.ndarray:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer()
    return np.array([[vader.polarity_scores(t)["compound"] for t in row]
                     for row in texts_by_alpha])


def main(argv=None) -> None:
    from reprlab import Session, datasets, fit_judge, steering_effect
    from reprlab.steer_eval import direction_from, judge_agreement

    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--layer", type=int, default=10)
    parser.add_argument("--alphas", type=float, nargs="+", default=[-0.25, 0.25])
    args = parser.parse_args(argv)
    start = time.perf_counter()
    s = Session.load()
    build, held_out = datasets.load("sentiment").split()
    judge = fit_judge(s, held_out)
    direction = direction_from(s, build, layer=args.layer)
    prompts = datasets.load("prompts")
    effect = steering_effect(s, direction, prompts, alphas=args.alphas, judge=judge,
                             max_new_tokens=args.tokens)
    lexicon = effect.rescored(vader_scores(effect.texts), "VADER compound")
    print(judge)
    print(f"{len(prompts)} prompts, {args.tokens} new tokens, layer {args.layer}, "
          f"{time.perf_counter() - start:.0f} s")
    print("judge (P(positive)):")
    print(effect.by_kind().summary())
    print("VADER compound (-1..1):")
    print(lexicon.by_kind().summary())
    print(judge_agreement(effect, lexicon).summary())
    for row in judge_agreement(effect, lexicon).rows():
        print(row)
    print("perplexity ratio:", dict(zip(effect.alphas.tolist(), effect.fluency_cost.round(2))))
    for a, texts in zip(effect.alphas, effect.texts):
        print(f"{a:+.2f}", [t[:60] for t in texts[:3]])


if __name__ == "__main__":
    main()
