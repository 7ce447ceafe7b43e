"""The tier-1 heatmap, drawn as SVG from a results document (never by hand).

Rows are target structures, columns are methods, one panel per budget, stacked so that a method's column lines up
across the budgets (and the figure fits the page's text column); a cell's colour and number are the mean relative
test error over the seeds. Cell colours are a fixed sequential palette (dark = exact fit, light = no better
than leaving W0 alone) with text in whichever of black or white contrasts with the fill, so a cell reads the same on
a light or a dark page; labels and frames use ``currentColor`` and take the page's text colour.
"""

from __future__ import annotations

import html
from pathlib import Path

from adapterspec.arena import settings

# Sequential ramp (perceptually ordered, dark blue → yellow), sampled at 0, 0.25, ..., 1 of the error scale.
RAMP = ((13, 8, 135), (126, 3, 168), (204, 71, 120), (248, 149, 64), (240, 249, 33))
CELL_W, CELL_H, LABEL_W, HEAD_H, GAP = 26, 17, 100, 84, 22  # cell, target labels, method names, between panels


def colour(err: float) -> tuple[str, str]:
    """(fill, text colour) for a relative error; errors at or above 1 take the top of the ramp."""
    x = max(0.0, min(1.0, err)) * (len(RAMP) - 1)
    i = min(int(x), len(RAMP) - 2)
    f = x - i
    rgb = [round(a + (b - a) * f) for a, b in zip(RAMP[i], RAMP[i + 1])]
    luminance = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]
    return f"rgb({rgb[0]},{rgb[1]},{rgb[2]})", "#000" if luminance > 120 else "#fff"


def _label(err: float | None) -> str:
    if err is None:
        return "div"
    return f"{err:.2f}" if err < 10 else f"{err:.0f}"


def heatmap_svg(doc: dict) -> str:
    """One SVG: targets × methods, a panel per budget, panels stacked."""
    run = set(doc.get("settings", {}).get("budgets", ()))  # a fit shared with a budget the run did not ask for
    rows = [r for r in doc["summary"] if not run or r["budget"] in run]  # (LoKr's 8 %) is not a panel of its own
    budgets = sorted({r["budget"] for r in rows})
    methods = sorted({r["method"] for r in rows})
    targets = [t for t in doc["targets"] if any(r["target"] == t for r in rows)]
    cell = {(r["method"], r["target"], r["budget"]): r for r in rows}
    panel_h = 18 + HEAD_H + len(targets) * CELL_H  # title, method names, cells
    width = max(LABEL_W + len(methods) * CELL_W + 8, LABEL_W + 640)  # room for the legend
    height = len(budgets) * (panel_h + GAP) + 40
    parts = []
    for p, b in enumerate(budgets):
        y0 = p * (panel_h + GAP)
        parts.append(f'<text x="{LABEL_W}" y="{y0 + 13}" font-size="12" font-weight="bold" '
                     f'fill="currentColor">budget {100 * b:g}% of the layer</text>')
        top = y0 + 18 + HEAD_H
        for j, m in enumerate(methods):
            cx = LABEL_W + j * CELL_W + CELL_W / 2
            parts.append(f'<text transform="translate({cx + 3},{top - 4}) rotate(-60)" font-size="10" '
                         f'fill="currentColor">{html.escape(m)}</text>')
        for i, t in enumerate(targets):
            y = top + i * CELL_H
            parts.append(f'<text x="{LABEL_W - 6}" y="{y + 12}" text-anchor="end" font-size="11" '
                         f'fill="currentColor">{html.escape(t)}</text>')
            for j, m in enumerate(methods):
                x = LABEL_W + j * CELL_W
                r = cell.get((m, t, b))
                if r is None:
                    parts.append(f'<text x="{x + CELL_W / 2}" y="{y + 12}" text-anchor="middle" font-size="9" '
                                 f'fill="currentColor" fill-opacity="0.5">–</text>')
                    continue
                err = r["mean"]
                fill, ink = colour(err if err is not None else 10.0)
                over = r["params"] > settings.OVER_BUDGET * r["budget_params"]
                tip = (f"{m} on {t}, budget {100 * b:g}%: {r['params']} parameters, relative error "
                       f"{_label(err)}" + (f" ± {r['spread']:.2f}" if r["spread"] else "")
                       + (" (over budget: not compared)" if over else ""))
                parts.append(f'<g><title>{html.escape(tip)}</title><rect x="{x}" y="{y}" width="{CELL_W - 1}" '
                             f'height="{CELL_H - 1}" fill="{fill}"'
                             + (' fill-opacity="0.45"' if over else "") + "/>"
                             f'<text x="{x + CELL_W / 2}" y="{y + 12}" text-anchor="middle" font-size="8.5" '
                             f'fill="{ink if not over else "currentColor"}">{_label(err)}</text></g>')
    # legend
    ly = len(budgets) * (panel_h + GAP)
    for k in range(11):
        fill, _ = colour(k / 10)
        parts.append(f'<rect x="{LABEL_W + k * 22}" y="{ly}" width="22" height="10" fill="{fill}"/>')
    parts.append(f'<text x="{LABEL_W}" y="{ly + 24}" font-size="10" fill="currentColor">0 (exact)</text>'
                 f'<text x="{LABEL_W + 242}" y="{ly + 24}" text-anchor="end" font-size="10" fill="currentColor">'
                 f'≥ 1 (W0 alone)</text>'
                 f'<text x="{LABEL_W + 260}" y="{ly + 9}" font-size="10" fill="currentColor">relative test error, '
                 f'mean over seeds; faded: over {settings.OVER_BUDGET:g}× the budget; div: diverged</text>')
    label = html.escape(alt_text(doc))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="adapterspec-figure arena-heatmap" '
            f'viewBox="0 0 {width} {height}" width="{width}" role="img" aria-label="{label}"><title>{label}</title>'
            + "".join(parts) + "</svg>\n")


def alt_text(doc: dict) -> str:
    """A sentence per budget naming, for each target, the method with the lowest error (the figure in words)."""
    rows = doc["summary"]
    out = ["Heatmap of relative test error (0 exact, 1 no better than the pretrained weight), target structures in "
           "rows, methods in columns, one panel per parameter budget."]
    for b in sorted({r["budget"] for r in rows}):
        best = []
        for t in doc["targets"]:
            cands = [r for r in rows if r["budget"] == b and r["target"] == t and r["mean"] is not None
                     and r["params"] <= settings.OVER_BUDGET * r["budget_params"]]
            if cands:
                r = min(cands, key=lambda r: r["mean"])
                best.append(f"{t}: {r['method']} {r['mean']:.2f}")
        if best:
            out.append(f"At {100 * b:g}%, lowest error per target: " + "; ".join(best) + ".")
    return " ".join(out)


def write_figures(doc: dict, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "heatmap.svg"
    path.write_text(heatmap_svg(doc), encoding="utf-8")
    return [path]
