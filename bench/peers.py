"""Activation extraction vs TransformerLens and nnsight wrapping the same model, offline.

Run: ``.venv/bin/python -m bench.peers`` (``--quick`` for a tiny-model smoke run). The peers
come from the ``peers`` extra (``pip install -c constraints.txt -e '.[peers]'``, which
``make bench`` and ``make test`` do); a peer that cannot be imported or cannot wrap the model
is reported as unavailable with the reason, not silently dropped.

Every tool reads the last token of every hidden state (embeddings, each block, final norm)
from the same length-sorted, left-padded batches, so the ratios compare hooking machinery,
not batching. Each peer's values are also checked against ``Session.activations``.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable

import torch

from reprlab import Session

from .common import best_of, report
from .extract import Batch, bench_texts, make_batches, plain_forward

Extractor = Callable[[list[Batch]], torch.Tensor]


def nnsight_extractor(session: Session) -> Extractor:
    """nnsight's ``TransformersModel`` around a copy of the model (llama-style layout).

    The copy keeps nnsight's module wrappers off the session's own model.
    """
    import nnsight
    from nnsight import TransformersModel

    wrapped = TransformersModel(copy.deepcopy(session.model), tokenizer=session.tokenizer,
                                task="text-generation")
    inner = wrapped.model  # the decoder under the LM head: embed_tokens, layers, norm

    def extract(batches: list[Batch]) -> torch.Tensor:
        rows = []
        for input_ids, mask, pos in batches:
            with wrapped.trace(input_ids=input_ids, attention_mask=mask,
                               position_ids=pos) as tracer:
                states = nnsight.save([inner.embed_tokens.output[:, -1]])
                for layer in list(inner.layers)[:-1]:
                    states.append(layer.output[:, -1])
                states.append(inner.norm.output[:, -1])
                tracer.stop()  # skip the LM head: nothing after the final norm is needed
            rows.append(torch.stack(states, 1))
        return torch.cat(rows)

    return extract


def transformer_lens_extractor(session: Session) -> Extractor:
    """TransformerLens 4's ``TransformerBridge`` over a copy of the model.

    The bridge switches the model it wraps to eager attention (so it can hook attention
    patterns); a copy keeps the session's own model on its faster kernel.
    """
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(
        session.info.name, hf_model=copy.deepcopy(session.model),
        tokenizer=session.tokenizer, device=str(session.device))
    n = session.n_blocks
    names = ["blocks.0.hook_resid_pre"]
    names += [f"blocks.{i}.hook_resid_post" for i in range(n - 1)] + ["ln_final.hook_out"]
    wanted = set(names)

    def extract(batches: list[Batch]) -> torch.Tensor:
        rows = []
        with torch.inference_mode():
            for input_ids, mask, pos in batches:
                _, cache = bridge.run_with_cache(input_ids, attention_mask=mask,
                                                 position_ids=pos,
                                                 names_filter=lambda name: name in wanted)
                rows.append(torch.stack([cache[name][:, -1] for name in names], 1))
        return torch.cat(rows)

    return extract


PEERS = {"nnsight": nnsight_extractor, "TransformerLens": transformer_lens_extractor}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny model, few texts (smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        session, args.texts, args.repeats = Session.tiny(), 64, 1
    else:
        session = Session.load()
    texts = bench_texts(args.texts)
    batches, order = make_batches(session, texts, args.batch_size)
    n_tokens = sum(int(mask.sum()) for _, mask, _ in batches)

    ours = session.activations(texts, batch_size=args.batch_size, progress=False, cache=False)
    reference = ours.values.float().transpose(0, 1)[order]  # [text (sorted), layer, width]
    plain_forward(session, texts[: args.batch_size], args.batch_size)  # warm-up
    t_plain = best_of(lambda: plain_forward(session, texts, args.batch_size), args.repeats)
    t_ours = best_of(lambda: session.activations(texts, batch_size=args.batch_size,
                                                 progress=False, cache=False), args.repeats)
    results: dict = {
        "texts": len(texts), "tokens": n_tokens,
        "plain transformers tokens/s": n_tokens / t_plain,
        "reprlab tokens/s": n_tokens / t_ours,
    }
    for name, build in PEERS.items():
        try:
            extract = build(session)
            values = extract(batches[:1])  # warm-up, and the first agreement check
            values = extract(batches)
        except Exception as err:  # an unavailable peer is a result, not a crash
            results[f"{name}: unavailable"] = f"{type(err).__name__}: {err}"[:160]
            continue
        t_peer = best_of(lambda extract=extract: extract(batches), args.repeats)
        results[f"{name} tokens/s"] = n_tokens / t_peer
        results[f"reprlab / {name} speed"] = t_peer / t_ours
        results[f"{name} max |diff| vs reprlab"] = float((values - reference).abs().max())
    report(f"extraction vs peers on {session.info}", results)
    return results


if __name__ == "__main__":
    main()
