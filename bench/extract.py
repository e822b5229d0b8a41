"""Activation extraction vs plain transformers, and cold GGUF load vs cached load.

Run: ``.venv/bin/python -m bench.extract`` (add ``--quick`` for a seconds-long smoke run).
Prints tokens/s for plain ``model(..., output_hidden_states=True)`` and for
``Session.activations`` (all layers, then the first half), with ratios measured in this run.
"""

from __future__ import annotations

import argparse
import time

import torch

from reprlab import Session, datasets, loading
from reprlab.activations import left_pad

from .common import best_of, report


def bench_texts(n: int) -> list[str]:
    pool = list(datasets.load("sentiment").texts) + list(datasets.load("truth").texts)
    for name in ("days", "months"):
        pool += [t for t, _ in datasets.load(name).examples()]
    return (pool * (n // len(pool) + 1))[:n]


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # input ids, attention mask, positions


def make_batches(session: Session, texts: list[str], batch_size: int) -> tuple[list[Batch], list]:
    """Length-sorted left-padded batches and the text order they follow."""
    ids = [session.tokenizer(t)["input_ids"] for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
    batches = [
        left_pad([ids[i] for i in order[start : start + batch_size]],
                  session.tokenizer.pad_token_id, session.device)
        for start in range(0, len(order), batch_size)
    ]
    return batches, order


def plain_forward(session: Session, texts: list[str], batch_size: int) -> None:
    """The baseline: same length-sorted left-padded batches, full forward with all states."""
    batches, _ = make_batches(session, texts, batch_size)
    with torch.inference_mode():
        for input_ids, mask, pos in batches:
            out = session.model(input_ids=input_ids, attention_mask=mask, position_ids=pos,
                                output_hidden_states=True, use_cache=False)
            torch.stack(out.hidden_states)[:, :, -1].float()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny model, few texts (smoke run)")
    parser.add_argument("--skip-load", action="store_true", help="skip the cold GGUF load")
    args = parser.parse_args(argv)

    if args.quick:
        session, args.texts, args.repeats, args.skip_load = Session.tiny(), 64, 1, True
    else:
        start = time.perf_counter()
        session = Session.load()
        cached_load = time.perf_counter() - start
    texts = bench_texts(args.texts)
    n_tokens = sum(len(session.tokenizer(t)["input_ids"]) for t in texts)
    half = list(range(session.n_blocks // 2 + 1))

    def extract(layers):
        return lambda: session.activations(texts, layers=layers, batch_size=args.batch_size,
                                           progress=False, cache=False)

    plain_forward(session, texts[: args.batch_size], args.batch_size)  # warm-up
    t_plain = best_of(lambda: plain_forward(session, texts, args.batch_size), args.repeats)
    t_all = best_of(extract(None), args.repeats)
    t_half = best_of(extract(half), args.repeats)
    results = {
        "texts": len(texts), "tokens": n_tokens,
        "plain tokens/s": n_tokens / t_plain,
        "activations all layers tokens/s": n_tokens / t_all,
        f"activations layers 0..{half[-1]} tokens/s": n_tokens / t_half,
        "ratio all layers (target >= 1.15)": t_plain / t_all,
        "ratio first half (target >= 2)": t_plain / t_half,
    }
    if not args.skip_load:
        start = time.perf_counter()
        loading.load_model(None, use_cache=False)
        results["cold GGUF load s"] = time.perf_counter() - start
        results["cached load s (target <= 5)"] = cached_load
    report(f"extraction on {session.info}", results)
    return results


if __name__ == "__main__":
    main()
