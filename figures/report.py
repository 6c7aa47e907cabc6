"""`Report`: what one `dp figures` call made, and how it is written as report.md and figures.json.

report.md shows each figure (relative links to its PNG and PDF), says what it
shows, lists notes and skips, and prints the numbers behind it as a table; the
header records the cache, runs, settings, seeds, judges, dp version and git hash.
figures.json holds the same and every further number (curves, per-problem
values). Nothing here computes or draws.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from dp.figures.common import FigureResult

REPORT_MD = "report.md"
REPORT_JSON = "figures.json"


@dataclass
class Report:
    """The outcome of `make_figures`."""

    out_dir: Path
    cache: str
    runs: list[str]  # runs drawn in figures 1-6
    live_runs: list[str]  # runs considered for figure 7
    settings: dict  # FigureSettings.as_dict()
    judges: dict  # main / ablation / roc judges really used
    provenance: dict  # dp.provenance.stamp()
    figures: list[FigureResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    points: dict = field(default_factory=dict)  # simulator points reused / computed

    def figure(self, name: str) -> FigureResult:
        return next(f for f in self.figures if f.name == name)

    @property
    def markdown_path(self) -> Path:
        return Path(self.out_dir) / REPORT_MD

    @property
    def json_path(self) -> Path:
        return Path(self.out_dir) / REPORT_JSON

    def to_json(self) -> dict:
        return {"cache": self.cache, "runs": self.runs, "live_runs": self.live_runs,
                "settings": self.settings, "judges": self.judges, "provenance": self.provenance,
                "notes": self.notes, "points": self.points,
                "figures": {f.name: f.to_json() for f in self.figures}}

    def write(self) -> None:
        Path(self.out_dir).mkdir(parents=True, exist_ok=True)
        self.json_path.write_text(json.dumps(_clean(self.to_json()), indent=1) + "\n", encoding="utf-8")
        self.markdown_path.write_text(render_markdown(self), encoding="utf-8")


def _clean(obj):
    """JSON-safe: NaN/inf as null, numpy scalars as Python numbers."""
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        return _clean(obj.item())
    return obj


def _cell(key: str, v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, float):
        if not math.isfinite(v):
            return "nan"
        if key.endswith("_pct") or key in ("tokens", "tokens_per_problem", "judge_pairs", "mean_prefix_tokens",
                                           "simulated_tokens", "live_tokens"):
            return f"{v:.1f}"
        return f"{v:.4f}"
    return str(v).replace("|", "\\|")


def markdown_table(columns: list[str], rows: list[dict]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(c, r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _figure_section(i: int, f: FigureResult) -> list[str]:
    out = [f"## {i}. {f.title}", "", f.what, ""]
    if f.skipped:
        out += [f"**Skipped:** {f.skipped}", ""]
    else:
        png = next((x for x in f.files if x.endswith(".png")), None)
        if png:
            out += [f"![{f.title}]({png})", ""]
        out += ["Files: " + ", ".join(f"[{x}]({x})" for x in f.files), ""]
    out += [f"- {n}" for n in f.notes] + ([""] if f.notes else [])
    if f.rows and f.columns:
        limit = f.data.get("max_table_rows") if isinstance(f.data, dict) else None
        rows = f.rows
        if limit and len(rows) > limit:
            keep = [r for r in rows if r.get("on_frontier")]
            rows = keep + [r for r in rows if not r.get("on_frontier")][: max(limit - len(keep), 0)]
            out += [f"Showing {len(rows)} of {len(f.rows)} rows (the frontier first); all are in "
                    f"{REPORT_JSON}.", ""]
        out += [markdown_table(f.columns, rows), ""]
    return out


def render_markdown(r: Report) -> str:
    p = r.provenance
    out = [
        "# DeepPrune figures", "",
        f"- cache: `{r.cache}`",
        f"- runs: {', '.join(r.runs) or 'none'}; live runs: {', '.join(r.live_runs) or 'none'}",
        f"- dp {p.get('dp_version')}, git {p.get('git_hash') or 'unknown'}, made {p.get('created_at')}",
        f"- seed {r.settings.get('seed')}, {r.settings.get('orders')} {r.settings.get('order_kind')} "
        f"arrival orders, truncation {r.settings.get('truncate')}",
        f"- judges: DeepPrune uses `{r.judges.get('main')}`; truncation ablation `{r.judges.get('ablation')}`; "
        f"ROC {', '.join(f'`{j}`' for j in r.judges.get('roc', []))}",
        f"- simulator points: {r.points.get('reused', 0)} read from `sim_points`, "
        f"{r.points.get('computed', 0)} computed now by `dp.simulate.replay.sweep.simulate`"
        f"{' and stored' if r.points.get('stored') else ' (cache read-only: not stored)'}",
    ]
    out += [f"- note: {n}" for n in r.notes]
    out += ["", "Settings:", "", "```json", json.dumps(_clean(r.settings), indent=1), "```", "",
            "Figures:", ""]
    for i, f in enumerate(r.figures, start=1):
        state = f"skipped: {f.skipped}" if f.skipped else ", ".join(f.files)
        out.append(f"{i}. [{f.title}](#{i}-{_anchor(f.title)}) ({state})")
    out.append("")
    for i, f in enumerate(r.figures, start=1):
        out += _figure_section(i, f)
    return "\n".join(out).rstrip() + "\n"


def _anchor(title: str) -> str:
    keep = "".join(c for c in title.lower() if c.isalnum() or c in " -")
    return keep.replace(" ", "-")
