"""Forward + backward time of each reference module against peft's layer, side by side in one process.

    python scripts/bench_peft.py                 # print the table
    python scripts/bench_peft.py --write         # also write docs/data/peft_speed.json, which the site renders
    python scripts/bench_peft.py lora oft        # only some methods

Setting (the same for both): one ``nn.Linear(1024, 1024)`` in float32 on the CPU, input ``(8, 128, 1024)`` (for a
method on another base, such as an embedding of 1024 tokens, 8 of its ``example_inputs``), every
trainable peft tensor randomised, our module built from peft's layer by ``from_peft``. One step is ``y = layer(x)`` then
``y.backward(g)`` (gradients of the adapter's tensors only). Ours and peft's steps alternate in blocks, and each side's
time is the median over all its blocks, so drift in the machine's speed affects both alike. Ratio = ours / peft.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "data" / "peft_speed.json"
D, BATCH, TOKENS = 1024, 8, 128


def _step(layer: nn.Module, x: torch.Tensor, g: torch.Tensor, kwargs: dict) -> None:
    for p in layer.parameters():
        p.grad = None
    layer(x, **kwargs).backward(g)


def _time_block(layer: nn.Module, x: torch.Tensor, g: torch.Tensor, steps: int, kwargs: dict) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        _step(layer, x, g, kwargs)
    return (time.perf_counter() - start) / steps


def bench(slug: str, blocks: int, steps: int) -> dict:
    from adapterspec.interop.equality import randomize_peft_, wrap
    from adapterspec.interop.peft import converters, from_peft, peft_config
    from adapterspec.registry import adapter_class

    conv = converters()[slug]
    config = dict(getattr(conv, "BENCH", conv.CASES[0]))
    gen = torch.Generator().manual_seed(0)
    base = adapter_class(slug).example_base(D, D, gen, torch.float32)
    warnings.filterwarnings("ignore", message="Sparse invariant checks")  # peft's SHiRA, on every call
    model, theirs = wrap(base, peft_config(slug, target_modules=["proj"], **config))
    randomize_peft_(model, gen, scale=0.1)
    ours = from_peft(theirs, method=slug)
    if isinstance(base, nn.Linear):
        x = torch.randn(BATCH, TOKENS, D, generator=gen)
    else:  # token ids for an embedding (vocabulary D): the method's own example inputs
        x = adapter_class(slug).example_inputs(base, BATCH, gen, torch.float32)
    kw = conv.forward_kwargs(ours, x) if hasattr(conv, "forward_kwargs") else {}  # Poly's task ids
    with torch.no_grad():
        g = torch.randn(theirs(x, **kw).shape, generator=gen)
    with torch.no_grad():
        err = float((ours(x, **kw) - theirs(x, **kw)).abs().max() / theirs(x, **kw).abs().max())
    for layer in (ours, theirs):  # warm-up
        _time_block(layer, x, g, 2, kw)
    t_ours, t_peft = [], []
    for b in range(blocks):
        pair = [(ours, t_ours), (theirs, t_peft)]
        for layer, out in pair if b % 2 == 0 else reversed(pair):
            out.append(_time_block(layer, x, g, steps, kw))
    m_ours, m_peft = statistics.median(t_ours), statistics.median(t_peft)
    return {"method": slug, "peft_layer": conv.LAYER, "config": config, "ours_ms": m_ours * 1e3,
            "peft_ms": m_peft * 1e3, "ratio": m_ours / m_peft, "rel_error": err}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("methods", nargs="*", help="method slugs (default: every method with a peft converter)")
    parser.add_argument("--blocks", type=int, default=10, help="alternating timing blocks per side (default 10)")
    parser.add_argument("--steps", type=int, default=3, help="forward+backward steps per block (default 3)")
    parser.add_argument("--write", action="store_true", help=f"write {OUT.relative_to(ROOT)}")
    args = parser.parse_args(argv)

    import peft

    from adapterspec.interop.peft import converters

    untimed = {slug: c.NOT_TIMED for slug, c in converters().items() if getattr(c, "BENCH", ()) is None}
    slugs = args.methods or sorted(set(converters()) - set(untimed))
    for slug in sorted(set(slugs) & set(untimed)):
        print(f"{slug}: not timed: {untimed[slug]}", file=sys.stderr)
    slugs = [s for s in slugs if s not in untimed]
    unknown = sorted(set(slugs) - set(converters()))
    if unknown:
        print(f"no peft converter for: {', '.join(unknown)}; have: {', '.join(sorted(converters()))}", file=sys.stderr)
        return 2
    rows = []
    print(f"{'method':<12} {'ours ms':>9} {'peft ms':>9} {'ratio':>6}   config", flush=True)
    for i, slug in enumerate(slugs, 1):
        r = bench(slug, args.blocks, args.steps)
        rows.append(r)
        cfg = ", ".join(f"{k}={v}" for k, v in r["config"].items())
        print(f"{slug:<12} {r['ours_ms']:9.2f} {r['peft_ms']:9.2f} {r['ratio']:6.2f}   {cfg}   [{i}/{len(slugs)}]",
              flush=True)
    if args.write:
        meta = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "torch": torch.__version__,
                "peft": peft.__version__, "python": platform.python_version(), "machine": platform.machine(),
                "threads": torch.get_num_threads(), "shape": [BATCH, TOKENS, D], "dtype": "float32",
                "blocks": args.blocks, "steps": args.steps}
        if OUT.exists() and args.methods:  # a partial run updates only its rows
            old = {r["method"]: r for r in json.loads(OUT.read_text())["rows"]}
            rows = sorted({**old, **{r["method"]: r for r in rows}}.values(), key=lambda r: r["method"])
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
        print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
