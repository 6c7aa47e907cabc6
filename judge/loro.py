"""Leave-one-run-out judge evaluation (the paper's judge tables): each judge scored on a run whose
model and task it never saw.

A group is a held-out name and its runs (`arith=arith20-n128,default`: runs of one model
and task leave together); the group's first run is the one evaluated. A judge is
`LABEL=SPEC` or `SPEC`, SPEC a registry name (`jaccard`, `embedding`, ...) or a judge
directory, where `{heldout}` stands for the group's name: the fold's judge, trained by
`dp judge train` on the runs of every other group (`results/judge_loro.sh`). A trained
judge that saw the held-out run's problems is refused (`dp.judge.insample`).

For every group, every rule of its run (`RULE` or `RUN=RULE`, as in `dp judge train`)
and every judge: AUROC, TNR at FNR 0.2, the ROC curve, and the judge's seconds per
1,000 pairs on this machine (wall time over the pairs it computed, not those read from
the judge-score cache; model loading excluded). Every judge scores the same seeded
sample of pairs per (run, rule) (`dp.judge.sampled_pairs.sample_pairs`). Nothing here trains
or draws (`dp.figures.loro` draws).
"""

from __future__ import annotations

import time
from pathlib import Path

from dp.cache import Cache
from dp.errors import DPError
from dp.judge.base import load_judge
from dp.judge.metrics import auroc, tnr_at_fnr
from dp.judge.scoring import score_pairs
from dp.judge.train import run_rules
from dp.provenance import stamp

CURVE_DECIMALS = 4


def parse_groups(specs: list[str]) -> dict[str, list[str]]:
    """NAME or NAME=RUN,RUN,... -> {name: runs}; a bare NAME is the run of that name."""
    groups: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, runs = spec.partition("=")
        members = [r.strip() for r in runs.split(",") if r.strip()] if sep else [name]
        if not name or not members:
            raise DPError(f"--group {spec!r}: expected NAME or NAME=RUN,RUN")
        if name in groups:
            raise DPError(f"--group {name} given twice")
        groups[name] = members
    if len(groups) < 2:
        raise DPError("leave-one-run-out needs at least two groups")
    seen = [r for rs in groups.values() for r in rs]
    if len(seen) != len(set(seen)):
        raise DPError("a run is in two groups")
    return groups


def parse_judges(specs: list[str]) -> list[tuple[str, str]]:
    """LABEL=SPEC or SPEC -> (label, spec)."""
    out = []
    for spec in specs:
        label, sep, target = spec.partition("=")
        out.append((label, target) if sep else (spec, spec))
    labels = [label for label, _ in out]
    if len(labels) != len(set(labels)):
        raise DPError("two judges with the same label")
    return out


def _roc(scores, labels) -> dict:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels.astype(bool), scores)
    return {"fpr": [round(float(x), CURVE_DECIMALS) for x in fpr],
            "tpr": [round(float(x), CURVE_DECIMALS) for x in tpr]}


def leave_one_run_out(cache: Cache, groups: dict[str, list[str]], rules: list[str], judges: list[tuple[str, str]],
                      max_pairs: int = 300, seed: int = 0, skip_missing: bool = False) -> dict:
    """Rows (group, run, rule, judge, AUROC, TNR at FNR 0.2, seconds per 1,000 pairs) and ROC curves.

    `skip_missing`: a `{heldout}` judge not trained for a group is left out of that group
    (listed under `missing`) instead of being an error."""
    from dp.judge.insample import in_sample
    from dp.judge.sampled_pairs import both_labels, sample_pairs

    for runs in groups.values():
        for r in runs:
            cache.run_info(r)  # unknown run: one-line error
    evaluated = {name: runs[0] for name, runs in groups.items()}
    members = [r for runs in groups.values() for r in runs]  # RUN=RULE may name any group member
    rule_of = [x for x in run_rules(rules, members) if x[0] in evaluated.values()]
    rows, curves, missing = [], {}, []
    for group, run in evaluated.items():
        questions = [p.question for p in cache.problems(run)]
        for _, rule in (x for x in rule_of if x[0] == run):
            pairs = sample_pairs(cache, run, rule, max_pairs, seed)
            if not both_labels(pairs):
                raise DPError(f"run '{run}' has no pairs of both labels under {rule}")
            panel = curves.setdefault(group, {}).setdefault(str(rule), {})
            for label, spec in judges:
                target = spec.replace("{heldout}", group)
                if "{heldout}" in spec and not Path(target).exists():
                    if skip_missing:
                        missing += [] if f"{label} ({target})" in missing else [f"{label} ({target})"]
                        continue
                    raise DPError(f"judge '{label}': no trained judge at {target} (train it on the runs "
                                  f"of every group but '{group}')")
                judge = load_judge(target, seed=seed)
                if in_sample(judge, run, questions):
                    raise DPError(f"judge '{label}' ({target}) was trained on problems of the held-out run '{run}'")
                stats: dict = {}
                t0 = time.perf_counter()
                scores = score_pairs(judge, rule, pairs.left, pairs.right, cache=cache, stats=stats)
                seconds = time.perf_counter() - t0
                computed = stats.get("computed", 0)
                rows.append({
                    "heldout": group, "run": run, "truncate": str(rule), "judge": label, "judge_key": judge.name,
                    "pairs": pairs.n, "positive_rate": pairs.positive_rate,
                    "auroc": auroc(scores, pairs.labels), "tnr_at_fnr_0_2": tnr_at_fnr(scores, pairs.labels, 0.2),
                    "scores_computed": computed,
                    "seconds_per_1000_pairs": round(1000 * seconds / computed, 3) if computed else None,
                })
                panel[label] = {"auroc": rows[-1]["auroc"], **_roc(scores, pairs.labels)}
    return {"rows": rows, "curves": curves, "groups": groups, "missing": missing,
            "settings": {"truncate": list(rules), "judges": [f"{a}={b}" for a, b in judges],
                         "max_pairs_per_rule": max_pairs, "seed": seed, "cache": str(cache.path)},
            **stamp()}


def run_loro(cache_path: str | Path, groups: list[str], rules: list[str], judges: list[str],
             max_pairs: int = 300, seed: int = 0, skip_missing: bool = False) -> dict:
    """`dp judge loro`: parse the group and judge specs, open the cache (scores are stored), evaluate."""
    from dp.judge.train import open_cache

    with open_cache(cache_path, write=True) as cache:
        return leave_one_run_out(cache, parse_groups(groups), rules, parse_judges(judges), max_pairs, seed,
                                 skip_missing)
