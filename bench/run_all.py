"""Run every benchmark and write bench/RESULTS.md (machine, versions, ratios from one run).

Run: ``.venv/bin/python -m bench.run_all`` (minutes; ``--quick`` for a tiny-model smoke run).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch
import transformers

from . import extract, lens, memory, peers, probes, steering, widgets
from .common import best_of, shown


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Float32 matrix-multiply throughput of this machine, for scale."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    return 2 * n**3 / best_of(lambda: a @ b, repeats) / 1e9


def peer_versions() -> str:
    """Installed versions of the tools bench/peers.py and bench/lens.py compare against."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("nnsight", "transformer-lens"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def forward_gflop_per_token(session) -> float:
    """Approximate forward FLOPs per token: 2 x parameters outside the embedding table."""
    embedding = session.model.get_input_embeddings().weight.numel()
    params = sum(p.numel() for p in session.model.parameters()) - embedding
    return 2 * params / 1e9


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args(argv)
    flag = ["--quick"] if args.quick else []
    start = time.perf_counter()
    sections = {
        "Activation extraction vs plain transformers": extract.main(flag),
        "Activation extraction vs TransformerLens and nnsight": peers.main(flag),
        "Logit lens vs TransformerLens and nnsight": lens.main(flag),
        "Probe curves vs a scikit-learn loop": probes.main(flag),
        "Steered vs plain generation": steering.main(flag),
        "Memory of extracting all layers, float32 vs float16 storage": memory.main(flag),
        "Widget latency (Python handler time)": widgets.main(flag),
    }
    gflops = matmul_gflops()
    from reprlab import Session

    session = Session.tiny() if args.quick else Session.load()
    per_token = forward_gflop_per_token(session)
    tokens_per_s = sections["Activation extraction vs plain transformers"][
        "activations all layers tokens/s"]
    lines = [
        "# Benchmark results", "",
        f"Written by `python -m bench.run_all{' --quick' if args.quick else ''}` in "
        f"{time.perf_counter() - start:.0f} s. Every ratio compares two measurements from the "
        "same run.", "",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        f"- python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, peers: {peer_versions()}",
        f"- model: {session.info}",
        f"- float32 matmul throughput: {gflops:.0f} GFLOP/s; extraction of all layers runs at "
        f"about {tokens_per_s * per_token:.0f} GFLOP/s "
        f"({100 * tokens_per_s * per_token / gflops:.0f}% of it)", "",
    ]
    for title, results in sections.items():
        lines += [f"## {title}", "", "| measure | value |", "|---|---|"]
        lines += [f"| {k} | {shown(v)} |" for k, v in results.items()]
        lines.append("")
    out = Path(args.out)
    out.write_text("\n".join(lines))
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
