"""What every figure module shares: the `FigureResult` record, drawing and saving.

Figures are drawn on `matplotlib.figure.Figure` objects with the Agg canvas,
never through pyplot, so no global backend or figure state is touched and a
figure module can run inside a notebook or a test. Each figure is saved as PNG
and PDF (PDF without a creation date, so identical numbers give identical
files). Nothing here reads the cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

FORMATS = ("png", "pdf")
DPI = 150

# One colour per policy, the same in every figure.
POLICY_COLORS = {
    "cons": "#444444", "deepprune": "#d62728", "deepprune-oracle": "#ff9896",
    "deepconf-low": "#1f77b4", "deepconf-high": "#aec7e8", "esc": "#2ca02c",
    "adaptive": "#98df8a", "random": "#9467bd",
}
CYCLE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
         "#bcbd22", "#17becf")


def color(i: int) -> str:
    return CYCLE[i % len(CYCLE)]


def policy_color(name: str, i: int = 0) -> str:
    return POLICY_COLORS.get(name, color(i))


@dataclass
class FigureResult:
    """One figure of the report: its files, the table behind it, or why it was skipped."""

    name: str  # file stem and JSON key: "redundancy", "roc", ...
    title: str
    what: str  # one or two sentences: what the figure shows and how to read it
    files: list[str] = field(default_factory=list)  # paths relative to the output directory
    columns: list[str] = field(default_factory=list)  # the table shown in report.md
    rows: list[dict] = field(default_factory=list)
    data: dict = field(default_factory=dict)  # further numbers for figures.json (curves, per problem)
    notes: list[str] = field(default_factory=list)  # partial skips, fallbacks, caveats
    skipped: str | None = None  # the reason, when the whole figure was not drawn

    def skip(self, reason: str) -> FigureResult:
        self.skipped = reason
        return self

    def to_json(self) -> dict:
        return {"name": self.name, "title": self.title, "what": self.what, "files": self.files,
                "skipped": self.skipped, "notes": self.notes, "columns": self.columns,
                "rows": self.rows, "data": self.data}


def new_figure(n_panels: int = 1, width: float = 4.2, height: float = 3.4,
               sharey: bool = False, stacked: bool = False) -> tuple[Figure, list]:
    """A figure with `n_panels` axes of `width` x `height` inches each, side by side (or one
    above the other when `stacked`); the axes always come back as a list."""
    size = (width, height * n_panels) if stacked else (max(width * n_panels, 4.5), height)
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    grid = (n_panels, 1) if stacked else (1, n_panels)
    axes = fig.subplots(*grid, sharey=sharey, squeeze=False)
    return fig, list(axes.ravel())


def save(fig: Figure, out_dir: Path, name: str) -> list[str]:
    """Write NAME.png and NAME.pdf under `out_dir`; returns the file names (relative)."""
    out = []
    for fmt in FORMATS:
        path = Path(out_dir) / f"{name}.{fmt}"
        meta = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
        fig.savefig(path, dpi=DPI, format=fmt, metadata=meta)
        out.append(path.name)
    return out


def pct(x: float | None) -> float | None:
    """A share as a percentage (None stays None)."""
    return None if x is None else 100.0 * float(x)


def pct_array(values) -> np.ndarray:
    """Shares as percentages for plotting; None (no graded problem: accuracy n/a) becomes NaN,
    which matplotlib leaves out instead of drawing a 0."""
    return np.array([np.nan if v is None else 100.0 * float(v) for v in values], dtype=float)


def ungraded_note(run: str, point: dict) -> str | None:
    """The note for a point whose run has no problem with a gold answer (accuracy n/a)."""
    if point.get("accuracy") is not None:
        return None
    return (f"run '{run}': no problem has a gold answer (served or imported without gold): accuracy and "
            "pass rate are n/a, tokens are still counted")
