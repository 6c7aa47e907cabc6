"""The frontier figure of one run: accuracy against tokens relative to cons@N, one colour per family.

Drawn from a `dp frontier` result (`frontier_RUN.json`): every point with its
spread over orders (error bars: accuracy and token-share standard deviations over
orders), in-sample judge points hollow, the Pareto front as a line, the budgets
as dotted verticals. `dp frontier --out DIR` draws it; `dp figures --out DIR`
draws it again from the JSON files it finds in DIR (`stored_frontier_figures`).
Computes nothing new.
"""

from __future__ import annotations

import json
from pathlib import Path

from dp.errors import DPError
from dp.figures.common import FigureResult, color, new_figure, save

FRONTIER_PREFIX = "frontier_"
MARKERS = ("o", "s", "^", "D")


def frontier_figure(r: dict, out_dir: str | Path) -> FigureResult:
    name = f"{FRONTIER_PREFIX}{r['run']}"
    res = FigureResult(name, f"Frontier of run '{r['run']}'",
                       "Accuracy against tokens relative to cons@N for every family's default grid "
                       f"(N = {r['n']}, prefix rule {r['truncate']}, judge {', '.join(r['judges'])}, "
                       f"{r['orders']} orders); bars: spread over orders; hollow: in-sample judge; line: front.")
    fig, (ax,) = new_figure(1, width=6.4, height=4.4)
    families = list(dict.fromkeys(p["family"] for p in r["points"]))
    for i, fam in enumerate(families):
        pts = [p for p in r["points"] if p["family"] == fam]
        c, marker = color(i), MARKERS[(i // 10) % len(MARKERS)]  # one colour (and marker) per family
        full = r["full_tokens"] or 1.0
        for p in pts:
            ax.errorbar(p["token_share"], p["accuracy"], xerr=p["tokens_std"] / full, yerr=p["accuracy_std"],
                        fmt=marker, ms=3.5, color=c, mfc="none" if p["in_sample"] else c, lw=0.6, alpha=0.8,
                        label=fam if p is pts[0] else None)
    front = r["front"]
    if front:
        ax.step([p["token_share"] for p in front], [p["accuracy"] for p in front], where="post", color="black", lw=1)
    for b in r["budgets"]:
        ax.axvline(b, ls=":", color="grey", lw=0.7)
    ax.set_xlabel("tokens / cons@N tokens")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{r['run']}: {r['problems']} problems x N = {r['n']}", fontsize=9)
    ax.legend(fontsize=6, loc="lower right")
    res.files = save(fig, Path(out_dir), name)
    res.columns = ["family", "settings", "token_share", "accuracy", "accuracy_se"]
    res.rows = [{k: p[k] for k in res.columns} for p in front]
    return res


def stored_frontier_figures(out_dir: str | Path) -> list[FigureResult]:
    """The figures of every OUT/frontier_RUN.json that `dp frontier --out` wrote there."""
    out = []
    for path in sorted(Path(out_dir).glob(f"{FRONTIER_PREFIX}*.json")):
        try:
            out.append(frontier_figure(json.loads(path.read_text(encoding="utf-8")), out_dir))
        except (OSError, ValueError, KeyError) as e:
            raise DPError(f"cannot draw {path}: {e}") from None
    return out
