"""`tune`: the library call behind `dp tune`: the cheapest setting that keeps cons@N's accuracy.

Over the points of a frontier (`dp.simulate.replay.frontier`, each with per-problem
accuracy and tokens on the same arrival orders), a setting is chosen on some
problems and reported on others (method.md section 4): the problems are split
into K seeded folds; for each fold the choice is made on the other K - 1 folds
(the cheapest out-of-sample point, bounds such as the oracle judge excepted, whose accuracy there is at least cons@N's minus
`tolerance`; or, with a `budget`, the most accurate point spending at most that
share of cons@N's tokens) and its tokens and accuracy are read on the held-out
fold only. The reported saving and accuracy are the held-out folds' together, so
no problem contributes to the choice it is reported for. The setting to serve is
then chosen once on all problems; its own numbers on those problems are an upper
bound and reported as such. `settings_file` turns the choice into the file that
`dp simulate/live/serve --settings` read (`read_settings`).

No replays here: everything is read off the points.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dp.errors import DPError
from dp.seeds import rng as make_rng
from dp.simulate.replay.pareto_stats import Point

SETTINGS_VERSION = 1
BOUNDS = ("deepprune-oracle",)  # bounds, not policies one can serve: never chosen


@dataclass(frozen=True)
class TuneSettings:
    tolerance: float = 0.01  # accuracy below cons@N's that is acceptable
    budget: float | None = None  # share of cons@N's tokens; given: the most accurate point within it
    folds: int = 5
    seed: int = 0

    def __post_init__(self):
        if not 0 <= self.tolerance <= 1:
            raise DPError(f"tolerance must be in [0, 1], got {self.tolerance}")
        if self.budget is not None and not 0 < self.budget <= 1:
            raise DPError(f"budget must be a share of cons@N's tokens in (0, 1], got {self.budget}")
        if self.folds < 2:
            raise DPError(f"folds must be >= 2, got {self.folds}")


def fold_of(problem_ids: list[str], k: int, seed: int) -> np.ndarray:
    """(P,) fold of each problem: a seeded balanced split into k folds."""
    if len(problem_ids) < k:
        raise DPError(f"{len(problem_ids)} problems cannot be split into {k} folds; use fewer --folds")
    perm = make_rng(seed, "tune-folds").permutation(len(problem_ids))
    folds = np.empty(len(problem_ids), dtype=np.int64)
    folds[perm] = np.arange(len(problem_ids)) % k
    return folds


def _on(p: Point, mask: np.ndarray) -> tuple[float, float, float]:
    """(accuracy over graded problems, tokens, cons@N tokens) of point p on the problems in mask."""
    g = mask & p.graded & np.isfinite(p.acc_pp)
    acc = float(p.acc_pp[g].mean()) if g.any() else float("nan")
    return acc, float(p.tok_pp[mask].sum()), float(p.full_pp[mask].sum())


def choose(points: list[Point], mask: np.ndarray, s: TuneSettings) -> Point | None:
    """The point chosen on the problems in `mask` (see the module doc)."""
    cons = next(p for p in points if p.policy == "cons")
    cons_acc = _on(cons, mask)[0]
    best, key = None, None
    for p in points:
        if p.in_sample or p.policy in BOUNDS:
            continue
        acc, tok, full = _on(p, mask)
        share = tok / full if full else 0.0
        if s.budget is not None:
            if share > s.budget + 1e-12:
                continue
            k = (-acc, share)
        else:
            if not (acc >= cons_acc - s.tolerance - 1e-12 or cons_acc != cons_acc):
                continue
            k = (share, -acc)
        if key is None or k < key:
            best, key = p, k
    return best


def tune(points: list[Point], s: TuneSettings) -> dict:
    """Cross-validated choice and held-out numbers, and the setting chosen on all problems."""
    cons = next((p for p in points if p.policy == "cons"), None)
    if cons is None:
        raise DPError("dp tune needs the cons family among the points")
    ids = cons.problem_ids
    folds = fold_of(ids, s.folds, s.seed)
    tok = acc_sum = cons_acc_sum = full = 0.0
    graded = 0
    per_fold = []
    for k in range(s.folds):
        held = folds == k
        pick = choose(points, ~held, s)
        if pick is None:
            raise DPError(f"fold {k}: no setting spends at most {s.budget:.0%} of cons@N's tokens on the other folds"
                          if s.budget is not None else f"fold {k}: no setting meets the tolerance on the other folds")
        p_acc, p_tok, p_full = _on(pick, held)
        c_acc = _on(cons, held)[0]
        g = int((held & cons.graded).sum())
        tok, full = tok + p_tok, full + p_full
        if g:
            acc_sum, cons_acc_sum, graded = acc_sum + p_acc * g, cons_acc_sum + c_acc * g, graded + g
        per_fold.append({"fold": k, "problems": int(held.sum()), "chosen": pick.family, "settings": pick.label(),
                         "held_out_token_share": p_tok / p_full if p_full else None,
                         "held_out_accuracy": p_acc, "held_out_cons_accuracy": c_acc})
    final = choose(points, np.ones(len(ids), dtype=bool), s)
    if final is None:
        raise DPError("no setting meets the tolerance/budget on the run's problems")
    f_acc, f_tok, f_full = _on(final, np.ones(len(ids), dtype=bool))
    return {
        "tolerance": s.tolerance, "budget": s.budget, "folds": s.folds, "seed": s.seed,
        "held_out_token_share": tok / full if full else None,
        "held_out_token_saving": 1 - tok / full if full else None,
        "held_out_accuracy": acc_sum / graded if graded else None,
        "held_out_cons_accuracy": cons_acc_sum / graded if graded else None,
        "per_fold": per_fold,
        "chosen_index": points.index(final),
        "chosen": {**final.as_dict(), "in_sample_token_share": f_tok / f_full if f_full else None,
                   "in_sample_accuracy": f_acc},
    }


SKIP = {"judge", "judge_arg", "judge_in_sample", "truncate", "accounting"}


def settings_file(run: dict, result: dict, point_params: dict, policy: str, judge: str | None,
                  rule: str | None = None) -> dict:
    """The settings file of a tune result (what `read_settings` reads)."""
    from dp.simulate.policies.registry import setting_names

    known = setting_names([policy])
    return {"dp_settings": SETTINGS_VERSION, "policy": policy,
            "params": {k: v for k, v in point_params.items() if k in known and k not in SKIP},
            "judge": judge, "truncate": rule or run["rules"][0], "tuned_on": {"run": run["run"], "n": run["n"],
                                                                       "problems": run["problems"]},
            "tune": {k: v for k, v in result.items() if k != "per_fold"}}


def read_settings(path: str | Path) -> dict:
    """A settings file written by `dp tune`: {policy, params, judge, truncate, ...}; bad files are DPErrors."""
    from dp.simulate.policies.registry import POLICIES, make_policy

    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DPError(f"cannot read settings file {path}: {e}") from None
    if not isinstance(d, dict) or d.get("dp_settings") != SETTINGS_VERSION or d.get("policy") not in POLICIES:
        raise DPError(f"{path} is not a dp tune settings file (version {SETTINGS_VERSION})")
    if not isinstance(d.get("params"), dict):
        raise DPError(f"{path}: 'params' must be an object")
    make_policy(d["policy"], **d["params"])  # validates the settings
    return d
