"""Logit lens over every layer and position: ``reprlab.lens`` vs TransformerLens and nnsight.

Run: ``.venv/bin/python -m bench.lens`` (minutes; ``--quick``: tiny model, 16 prompts). The
peers come from the ``peers`` extra, wrap a copy of the same model offline as in
``bench/peers.py``, and are reported as unavailable with the reason when they cannot run.

Every contender computes the same thing for every hidden state (embeddings, each block, final
norm) at every position of every prompt, in float32: the final norm and the LM head, then the
top-10 token ids and probabilities, the entropy and KL(final || layer) in nats. All get the same
prompts in the same length-sorted batches of ``--batch-size``:

- reprlab: ``reprlab.lens(session, batch, k=10)`` per batch, the activation cache cleared
  before each timed run (so every run does its forward passes);
- TransformerLens: ``run_with_cache`` (resid_pre of every block and the last resid_post only),
  ``cache.accumulated_resid(apply_ln=True)`` (TL 4 recomputes the final norm per layer there),
  ``unembed``;
- nnsight: one ``trace`` saving the embedding and every block's output (stopped before the LM
  head), then the model's own final norm and ``lm_head``.

The peers' padded positions are dropped before the head, and their head runs in chunks of
``rows x 31`` distributions, with as many rows per call as ``reprlab.lens`` uses by default (256
distributions, 48 MB of logits on the embedded model), so nobody holds ``31 x tokens x vocab``
at once. Times are medians over repeats of each contender's total over the batches, after a
warm-up on the first batch; within a repeat each batch runs every contender back to back, in
an order that rotates from batch to batch. Peak memory of reprlab's lens is measured as
``bench.memory`` does: in a fresh process, VmHWM and sampled RssAnon.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

import reprlab
from reprlab import Session, datasets
from reprlab.lenses import MAX_BYTES

from .common import report
from .extract import Batch, make_batches
from .memory import _peak_mb, _PeakSampler

KEYS = ("top_ids", "top_probs", "entropy", "kl")
Outputs = dict[str, torch.Tensor]  # KEYS -> [layers, rows, k] or [layers, rows]
Contender = Callable[[int], Outputs]  # batch index -> the lens over that batch's rows


def lens_texts(session: Session, n: int, lo: int = 10, hi: int = 30, seed: int = 0) -> list[str]:
    """``n`` prompts of about ``lo``..``hi`` tokens: built-in sentences and prompts
    (sentiment, truth, steering prompts), shuffled and joined until each reaches a length
    drawn from ``lo..hi`` without passing ``hi`` (a single sentence longer than ``hi`` stays
    whole)."""
    pool = [*datasets.load("sentiment").texts, *datasets.load("truth").texts,
            *datasets.load("prompts").texts]
    rng = random.Random(seed)
    rng.shuffle(pool)
    sizes = [len(session.tokenizer(t)["input_ids"]) for t in pool]
    out, next_ = [], 0
    for _ in range(n):
        target, parts, total = rng.randint(lo, hi), [], 0
        for _ in range(len(pool)):
            i, next_ = next_, (next_ + 1) % len(pool)
            if parts and total + sizes[i] > hi:
                continue
            parts.append(pool[i])
            total += sizes[i]
            if total >= target:
                break
        out.append(" ".join(parts))
    return out


def rows_per_head_call(session: Session) -> int:
    """Rows sent through the head per call at all layers at once, as ``reprlab.lens`` does by
    default (256 distributions within its 256 MB budget of four float32 buffers)."""
    vocab = session.backend.unembedding.shape[0]
    distributions = max(1, min(256, MAX_BYTES // (4 * 4 * vocab)))
    return max(1, distributions // (session.n_blocks + 1))


def head_outputs(normed: torch.Tensor, head: Callable, k: int, step: int) -> Outputs:
    """The lens read-outs of final-normed states ``normed`` ``[layers, rows, width]`` (the last
    layer is the model's own output), ``step`` rows at every layer per head call."""
    parts: dict[str, list] = {key: [] for key in KEYS}
    for start in range(0, normed.shape[1], step):
        logp = torch.log_softmax(head(normed[:, start:start + step]).float(), dim=-1)
        p = logp.exp()
        top = logp.topk(k, dim=-1)
        parts["top_ids"].append(top.indices)
        parts["top_probs"].append(top.values.exp())
        parts["entropy"].append(-(p * logp).sum(-1))
        parts["kl"].append((p[-1] * (logp[-1] - logp)).sum(-1).clamp_min(0))
    return {key: torch.cat(value, dim=1) for key, value in parts.items()}


def reprlab_contender(session: Session, groups: list[list[str]], k: int) -> Contender:
    def run(b: int) -> Outputs:
        r = reprlab.lens(session, groups[b], k=k)
        return {"top_ids": r.top_ids, "top_probs": r.top_probs, "entropy": r.entropy,
                "kl": r.kl_to_final}

    return run


def transformer_lens_contender(session: Session, batches: list[Batch], k: int) -> Contender:
    """TransformerLens 4's ``TransformerBridge`` over a copy of the model (see bench/peers.py)."""
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(
        session.info.name, hf_model=copy.deepcopy(session.model),
        tokenizer=session.tokenizer, device=str(session.device))
    n = bridge.cfg.n_layers
    wanted = {f"blocks.{i}.hook_resid_pre" for i in range(n)} | {f"blocks.{n - 1}.hook_resid_post"}
    step = rows_per_head_call(session)

    def run(b: int) -> Outputs:
        input_ids, mask, pos = batches[b]
        with torch.inference_mode():
            _, cache = bridge.run_with_cache(input_ids, attention_mask=mask, position_ids=pos,
                                             names_filter=lambda name: name in wanted)
            stack = cache.accumulated_resid(apply_ln=True)  # [layers, batch, pos, width]
            return head_outputs(stack[:, mask.bool()], bridge.unembed, k, step)

    return run


def nnsight_contender(session: Session, batches: list[Batch], k: int) -> Contender:
    """nnsight's ``TransformersModel`` around a copy of the model (see bench/peers.py)."""
    import nnsight
    from nnsight import TransformersModel

    model = copy.deepcopy(session.model)
    wrapped = TransformersModel(model, tokenizer=session.tokenizer, task="text-generation")
    inner = wrapped.model
    norm, lm_head = model.model.norm, model.lm_head
    step = rows_per_head_call(session)

    def run(b: int) -> Outputs:
        input_ids, mask, pos = batches[b]
        with torch.inference_mode():
            with wrapped.trace(input_ids=input_ids, attention_mask=mask,
                               position_ids=pos) as tracer:
                states = nnsight.save([inner.embed_tokens.output])
                for layer in inner.layers:
                    states.append(layer.output)
                tracer.stop()  # the lens applies the head itself, in chunks
            normed = norm(torch.stack(states)[:, mask.bool()])  # [layers, rows, width]
            return head_outputs(normed, lm_head, k, step)

    return run


def agreement(theirs: Outputs, ours: Outputs) -> dict[str, float]:
    return {
        "max |top-k prob diff|": float((theirs["top_probs"] - ours["top_probs"]).abs().max()),
        "max |KL diff|": float((theirs["kl"] - ours["kl"]).abs().max()),
        "max |KL diff| / KL where KL > 1 nat": float(
            ((theirs["kl"] - ours["kl"]).abs() / ours["kl"].clamp_min(1))[ours["kl"] > 1].max()
            if (ours["kl"] > 1).any() else 0.0),
        "max |entropy diff|": float((theirs["entropy"] - ours["entropy"]).abs().max()),
        "top-1 id agreement": float((theirs["top_ids"][..., 0] == ours["top_ids"][..., 0])
                                    .float().mean()),
    }


def _memory_child(args) -> dict:
    """Peak memory of reprlab's lens over the prompts, in this fresh process, in the batches
    the timing uses."""
    session = Session.tiny() if args.quick else Session.load()
    texts = lens_texts(session, args.texts)
    _, order = make_batches(session, texts, args.batch_size)
    groups = [[texts[i] for i in order[s:s + args.batch_size]]
              for s in range(0, len(order), args.batch_size)]
    before = _peak_mb()
    sampler = _PeakSampler()
    sampler.start()
    results = [reprlab.lens(session, group, k=args.k) for group in groups]
    sampler.done.set()
    sampler.join()
    kept = sum(t.nbytes for r in results for t in (r.top_ids, r.top_probs, r.entropy,
                                                  r.kl_to_final))
    return {"before_mb": before, "peak_mb": _peak_mb(), "peak_anon_mb": sampler.peak,
            "result_tensors_mb": kept / 2**20, "cache_mb": session.cache_bytes / 2**20}


def measure_memory(args) -> dict:
    cmd = [sys.executable, "-m", "bench.lens", "--memory-child", "--texts", str(args.texts),
           "--batch-size", str(args.batch_size), "--k", str(args.k)]
    out = subprocess.run(cmd + (["--quick"] if args.quick else []), capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


PEERS = {"TransformerLens": transformer_lens_contender, "nnsight": nnsight_contender}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny model, 16 prompts")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.texts, args.batch_size, args.repeats = 16, 4, 2
    if args.memory_child:
        print(json.dumps(_memory_child(args)))
        return {}
    session = Session.tiny() if args.quick else Session.load()
    texts = lens_texts(session, args.texts)
    batches, order = make_batches(session, texts, args.batch_size)
    groups = [[texts[i] for i in order[s:s + args.batch_size]]
              for s in range(0, len(order), args.batch_size)]
    lengths = sorted(int(row.sum()) for _, mask, _ in batches for row in mask)
    n_layers = session.n_blocks + 1
    results: dict = {
        "prompts x tokens (min / median / max tokens)":
            f"{len(texts)} x {sum(lengths)} ({lengths[0]} / {statistics.median(lengths):g} "
            f"/ {lengths[-1]})",
        "layers x positions read (distributions of vocab "
        f"{session.backend.unembedding.shape[0]})": f"{n_layers} x {sum(lengths)}",
        "batches x prompts, head rows per call (x layers)":
            f"{len(batches)} x {args.batch_size}, {rows_per_head_call(session)} "
            f"(x {n_layers})",
    }

    contenders: dict[str, Contender] = {
        "reprlab": reprlab_contender(session, groups, args.k)}
    for name, build in PEERS.items():
        try:
            contender = build(session, batches, args.k)
            contender(0)  # warm-up on the first batch, and a check that it runs at all
        except Exception as err:  # an unavailable peer is a result, not a crash
            results[f"{name}: unavailable"] = f"{type(err).__name__}: {err}"[:160]
            continue
        contenders[name] = contender
    contenders["reprlab"](0)  # warm-up

    names = list(contenders)
    load_before = os.getloadavg()[0]
    # Each batch runs every contender back to back, in an order that rotates from batch to
    # batch, so a change of load on a shared machine reaches them all alike.
    times = {name: [[0.0] * len(batches) for _ in range(args.repeats)] for name in names}
    parts: dict[str, list[Outputs]] = {name: [] for name in names}  # the last repeat's
    turn = 0
    for rep in range(args.repeats):
        for b in range(len(batches)):
            for name in names[turn % len(names):] + names[:turn % len(names)]:
                session.cache.clear()  # reprlab's lens must run its forward passes each time
                start = time.perf_counter()
                out = contenders[name](b)
                times[name][rep][b] = time.perf_counter() - start
                if rep == args.repeats - 1:
                    parts[name].append(out)
            turn += 1
            print(f"repeat {rep + 1} batch {b + 1}: " + ", ".join(
                f"{name} {times[name][rep][b]:.1f} s" for name in names), file=sys.stderr)
    session.cache.clear()
    outputs = {name: {key: torch.cat([o[key] for o in outs], dim=1) for key in KEYS}
               for name, outs in parts.items()}
    totals = {name: [sum(run) for run in runs] for name, runs in times.items()}
    median = {name: statistics.median(t) for name, t in totals.items()}
    for name in names:
        results[f"{name} s (median of {args.repeats}: "
                f"{', '.join(f'{t:.1f}' for t in totals[name])})"] = median[name]
    for name in names[1:]:
        target = " (target >= 1.5)" if name == "TransformerLens" else ""
        results[f"ratio reprlab vs {name} speed{target}"] = median[name] / median["reprlab"]
        results[f"ratio reprlab vs {name}, median over repeats x batches"] = statistics.median(
            theirs / ours for run, our_run in zip(times[name], times["reprlab"], strict=True)
            for theirs, ours in zip(run, our_run, strict=True))
    for name in names[1:]:
        for key, value in agreement(outputs[name], outputs["reprlab"]).items():
            target = " (target <= 1e-4)" if key in ("max |top-k prob diff|", "max |KL diff|") \
                else ""
            results[f"{name} {key} vs reprlab{target}"] = value
    results["largest KL(final || layer) nats"] = float(outputs["reprlab"]["kl"].max())
    results["repeats (interleaved by batch, after a warm-up)"] = args.repeats
    results["load average (1 min) before / after the timing, on "
            f"{os.cpu_count()} cores"] = f"{load_before:.1f} / {os.getloadavg()[0]:.1f}"
    if not args.no_memory:
        r = measure_memory(args)
        results[f"reprlab lens peak RSS MB (model loaded: {r['before_mb']:.0f})"] = r["peak_mb"]
        results["reprlab lens peak anonymous MB"] = r["peak_anon_mb"]
        results["reprlab activation cache after the lens MB"] = r["cache_mb"]
        results["reprlab lens result tensors MB"] = r["result_tensors_mb"]
    report(f"logit lens vs peers on {session.info}", results)
    return results


if __name__ == "__main__":
    main()
