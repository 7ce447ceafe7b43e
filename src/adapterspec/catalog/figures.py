"""Figures for the method pages, drawn as SVG from numbers the verifier measured (never typed, never fetched).

`delta_data` runs in the entry's verifier process (bounded like the rest of verification) and returns plain numbers:
the update ``ΔW = W' − W0`` of the reference module in a randomized state, on one fixed layer shape for every method
so that pages compare at a glance, and its singular values. `delta_svg` and `spectrum_svg` draw them. Colours are a
diverging palette that reads on light and dark backgrounds; text and axes use ``currentColor``.
"""

from __future__ import annotations

import html
from typing import Any

import torch

SHAPE = (32, 24)  # (d_in, d_out) shared by every method's figure, where the method accepts it
CELL = 9  # pixels per matrix entry


def delta_data(slug: str, hyperparameters: dict[str, Any], fallback: tuple[int, int], seed: int = 7) -> dict | None:
    """ΔW and its singular values for ``slug`` on `SHAPE` (or on ``fallback`` when the method cannot wrap that
    shape), randomized away from its init; None for a method without one weight update (activation-space methods,
    and those that change several weights at once)."""
    from adapterspec.registry import adapter_class, create, randomize_

    cls = adapter_class(slug)
    if not cls.has_delta_weight():
        return None
    for d_in, d_out in (SHAPE, fallback):
        try:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)
                base = cls.example_base(d_in, d_out, torch.Generator().manual_seed(seed), torch.float64)
                module = randomize_(create(slug, base, **hyperparameters).to(torch.float64),
                                    torch.Generator().manual_seed(seed + 1))
            with torch.no_grad():
                dW = module.delta_weight()
        except Exception:  # noqa: BLE001 — a shape this method cannot wrap: try the entry's own
            continue
        if dW.dim() != 2:
            return None  # LN tuning's update is a vector, not a matrix
        S = torch.linalg.svdvals(dW)
        return {"shape": [d_out, d_in], "delta": [[round(float(v), 6) for v in row] for row in dW],
                "singular_values": [float(s) for s in S]}
    return None


def _colour(v: float) -> str:
    """Diverging: blue for negative, red for positive, transparent at zero (the page's background shows through)."""
    v = max(-1.0, min(1.0, v))
    rgb = "203,24,29" if v > 0 else "33,102,172"
    return f"rgba({rgb},{abs(v) ** 0.7:.3f})"


def delta_svg(data: dict, name: str) -> str:
    """A heatmap of ΔW (rows: outputs, columns: inputs), scaled by its largest entry."""
    rows = data["delta"]
    d_out, d_in = data["shape"]
    top = max((abs(v) for row in rows for v in row), default=0.0) or 1.0
    w, h = d_in * CELL, d_out * CELL
    cells = "".join(f'<rect x="{j * CELL}" y="{i * CELL}" width="{CELL}" height="{CELL}" fill="{_colour(v / top)}"/>'
                    for i, row in enumerate(rows) for j, v in enumerate(row) if v)
    label = html.escape(f"Heatmap of the update ΔW of {name} on a {d_out}×{d_in} layer in a randomized state: red "
                        f"entries are positive, blue negative, white zero; largest magnitude {top:.2g}.")
    return (f'<svg class="adapterspec-figure" viewBox="-2 -2 {w + 4} {h + 22}" width="{w + 4}" role="img" '
            f'aria-label="{label}"><title>{label}</title>'
            f'<rect x="-1" y="-1" width="{w + 2}" height="{h + 2}" fill="none" stroke="currentColor" '
            f'stroke-opacity="0.4"/>{cells}'
            f'<text x="0" y="{h + 15}" font-size="11" fill="currentColor">ΔW, {d_out} × {d_in}</text></svg>')


def spectrum_svg(data: dict, name: str) -> str:
    """The singular values of ΔW, largest first, as bars on a log scale (zero ones drawn as ticks at the bottom)."""
    import math

    S = data["singular_values"]
    top = S[0] if S and S[0] > 0 else 1.0
    floor = top * 1e-12
    w, h, bar = 240, 120, 240 / max(len(S), 1)

    def y(s: float) -> float:
        return h * (1 - (math.log10(max(s, floor)) - math.log10(floor)) / (math.log10(top) - math.log10(floor)))

    bars = "".join(f'<rect x="{i * bar:.1f}" y="{y(s):.1f}" width="{max(bar - 1, 1):.1f}" height="{h - y(s) + 1:.1f}" '
                   f'fill="currentColor" fill-opacity="0.75"/>' for i, s in enumerate(S))
    rank = sum(s > top * 1e-9 for s in S)
    label = html.escape(f"Singular values of ΔW for {name}, largest first, on a log scale from {top:.2g} down to "
                        f"{floor:.0e}: {rank} of {len(S)} are above 1e-9 of the largest (numerical rank {rank}).")
    return (f'<svg class="adapterspec-figure" viewBox="-2 -2 {w + 4} {h + 22}" width="{w + 4}" role="img" '
            f'aria-label="{label}"><title>{label}</title>'
            f'<line x1="0" y1="{h + 1}" x2="{w}" y2="{h + 1}" stroke="currentColor" stroke-opacity="0.4"/>{bars}'
            f'<text x="0" y="{h + 15}" font-size="11" fill="currentColor">singular values (log), rank {rank}/{len(S)}'
            f'</text></svg>')
