"""Frontier statistics over replayed points: the Pareto front and the best point per budget.

A `Point` is one policy setting replayed on a run (a `PolicyResult` reduced to what
the frontier needs, with its per-problem accuracy and tokens). Token shares are
relative to cons@N on the same traces (tokens / full tokens). Standard errors are
over problems (the sampling unit); the paired difference of a family against
random pruning at a budget is taken per problem on the same arrival orders (the
replays share their seeded orders), so its standard error is that of the
per-problem differences. Problems without a gold answer (per-problem `graded`
false, when the replay reports it) count in tokens, never in accuracy.

In-sample points (a judge trained on the run's problems) are kept and flagged,
but never on the front and never chosen for a budget. Knows nothing about the
cache, the CLI or figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dp.errors import DPError

LABEL_KEYS = ("tau", "K2", "K3", "keep", "m", "window", "confidence", "warmup", "conf_window", "similarity")


@dataclass
class Point:
    family: str  # policy family, with the judge for judged ones: deepprune[features]
    policy: str  # registry name
    params: dict
    judge: str | None
    tokens: float
    tokens_std: float  # over orders
    full_tokens: float
    accuracy: float
    accuracy_std: float  # over orders
    in_sample: bool
    rule: str | None = None  # the prefix rule of prefix policies (None: the policy reads no prefix)
    problem_ids: list = field(repr=False, default_factory=list)
    acc_pp: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))  # (P,) accuracy per problem
    tok_pp: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))  # (P,) tokens per problem
    full_pp: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))  # (P,) cons@N tokens
    graded: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, bool))  # (P,) has a gold answer

    @classmethod
    def of(cls, family: str, r, judge: str | None = None, rule: str | None = None) -> Point:
        pp = r.per_problem
        return cls(
            family=family, policy=r.policy, params=dict(r.params), judge=judge, tokens=float(r.tokens),
            tokens_std=float(r.tokens_std), full_tokens=float(r.full_tokens), accuracy=_num(r.accuracy),
            accuracy_std=_num(r.accuracy_std), in_sample=bool(r.judge_in_sample), rule=rule,
            problem_ids=[d["problem_id"] for d in pp],
            acc_pp=np.array([d["accuracy"] if d["accuracy"] is not None else np.nan for d in pp], dtype=float),
            tok_pp=np.array([d["tokens"] for d in pp], dtype=float),
            full_pp=np.array([d["full_tokens"] for d in pp], dtype=float),
            graded=np.array([bool(d.get("graded", True)) for d in pp], dtype=bool),
        )

    @property
    def share(self) -> float:
        """Tokens relative to cons@N."""
        return self.tokens / self.full_tokens if self.full_tokens else 0.0

    def label(self) -> str:
        return " ".join(f"{k}={self.params[k]}" for k in LABEL_KEYS if k in self.params) or "-"

    def accuracy_se(self) -> float | None:
        a = self.acc_pp[self.graded & np.isfinite(self.acc_pp)]
        return float(a.std(ddof=1) / np.sqrt(a.size)) if a.size > 1 else None

    def as_dict(self) -> dict:
        return {"family": self.family, "policy": self.policy, "judge": self.judge, "truncate": self.rule,
                "settings": self.label(),
                "params": self.params, "tokens": self.tokens, "tokens_std": self.tokens_std,
                "token_share": self.share, "accuracy": self.accuracy, "accuracy_std": self.accuracy_std,
                "accuracy_se": self.accuracy_se(), "in_sample": self.in_sample}


def _num(x) -> float:
    """A float, NaN for None (accuracy over no graded problem)."""
    return float("nan") if x is None else float(x)


def pareto_front(points: list[Point]) -> list[Point]:
    """Out-of-sample points no other beats on both tokens and accuracy, by token share
    (equal tokens: the more accurate; a point must be strictly more accurate than every cheaper one)."""
    pts = sorted((p for p in points if not p.in_sample and p.accuracy == p.accuracy),
                 key=lambda p: (p.share, -p.accuracy))
    out: list[Point] = []
    for p in pts:
        if not out or p.accuracy > out[-1].accuracy + 1e-12:
            out.append(p)
    return out


def best_within(points: list[Point], budget: float) -> Point | None:
    """The most accurate out-of-sample point spending at most `budget` of cons@N's tokens
    (ties: the cheaper, then the first)."""
    ok = [p for p in points if not p.in_sample and p.accuracy == p.accuracy and p.share <= budget + 1e-12]
    if not ok:
        return None
    return min(ok, key=lambda p: (-p.accuracy, p.share))


def paired_diff(a: Point, b: Point) -> tuple[float, float | None]:
    """Mean and standard error over graded problems of a's accuracy minus b's, per problem."""
    if a.problem_ids != b.problem_ids:
        raise DPError("paired difference over different problems")
    keep = a.graded & b.graded & np.isfinite(a.acc_pp) & np.isfinite(b.acc_pp)
    d = a.acc_pp[keep] - b.acc_pp[keep]
    if not d.size:
        return float("nan"), None
    return float(d.mean()), (float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else None)


def budget_table(points: list[Point], budgets) -> list[dict]:
    """Per family and budget: the best point within it and its paired difference against random."""
    rows = []
    families = list(dict.fromkeys(p.family for p in points))
    randoms = [p for p in points if p.policy == "random"]
    for fam in families:
        mine = [p for p in points if p.family == fam]
        for b in budgets:
            best = best_within(mine, b)
            row = {"family": fam, "budget": float(b), "point": None, "vs_random": None}
            if best is not None:
                row["point"] = best.as_dict()
                rand = best_within(randoms, b)
                if rand is not None and best.policy != "random":
                    diff, se = paired_diff(best, rand)
                    row["vs_random"] = {"random_settings": rand.label(), "random_token_share": rand.share,
                                        "random_accuracy": rand.accuracy, "accuracy_diff": diff,
                                        "accuracy_diff_se": se}
            rows.append(row)
    return rows
