"""Tokens/s of plain generation vs steered generation (one hook) on the embedded model.

Run: ``.venv/bin/python -m bench.steering`` (``--quick``: tiny model, seconds).
Target: steered >= 0.9x plain.
"""

from __future__ import annotations

import argparse

from reprlab import Direction, Session, Steer

from .common import best_of, report

PROMPT = "I think the movie was"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    session = Session.tiny() if args.quick else Session.load()
    if args.quick:
        args.tokens, args.repeats = 20, 1
    layer = session.n_blocks // 3
    direction = Direction.from_dataset(session, "sentiment", layer)
    steer = Steer(direction, alpha=0.25)
    steer.unit(session)  # reference statistics are computed once, outside the timing

    def plain():
        return list(session.stream(PROMPT, max_new_tokens=args.tokens))

    def steered():
        return list(session.stream(PROMPT, max_new_tokens=args.tokens, steer=steer))

    def transformers_generate():
        enc = session.tokenizer(PROMPT, return_tensors="pt").to(session.device)
        out = session.model.generate(**enc, max_new_tokens=args.tokens, do_sample=False,
                                     pad_token_id=session.tokenizer.pad_token_id)
        return out.shape[1] - enc["input_ids"].shape[1]

    n_plain, n_steered = len(plain()), len(steered())  # warm-up; EOS may end early
    n_hf = transformers_generate()
    t_plain, t_steered = best_of(plain, args.repeats), best_of(steered, args.repeats)
    t_hf = best_of(transformers_generate, args.repeats)
    results = {
        "transformers generate tokens/s": n_hf / t_hf,
        "plain tokens/s": n_plain / t_plain,
        "steered tokens/s (one hook)": n_steered / t_steered,
        "ratio (target >= 0.9)": (n_steered / t_steered) / (n_plain / t_plain),
    }
    report(f"steering on {session.info}, layer {layer}, {args.tokens} new tokens", results)
    return results


if __name__ == "__main__":
    main()
