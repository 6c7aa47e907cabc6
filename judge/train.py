"""The library behind `dp judge pairs|train|eval`: build pairs, train a judge, evaluate one.

Trainers are a registry, `TRAINERS`: judge type -> "module:function" with the signature
`trainer(pairs: PairSet, out: Path, seed: int, meta: dict, **settings) -> Judge` (a trainer
without `**settings` takes none); the trainer writes
`out/judge.json` (with {"type": ...} and `meta`) plus whatever weights it needs, and the
saved directory must load back with `load_judge(out)`. `train_judge` then adds the
training AUROC to judge.json. Other modules add trainers with `register_trainer`
(the cross-encoder and LLM judges).

Every function opens the cache itself and returns a plain dict (what `--json` prints).
Nothing here parses flags or prints.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dp.cache import Cache
from dp.errors import DPError
from dp.judge.base import JUDGE_FILE, Judge, load_judge
from dp.judge.insample import problem_digest
from dp.judge.metrics import judge_metrics
from dp.judge.pairs import PairSet, build_pairs
from dp.judge.scoring import score_pairs
from dp.judge.truncation import TruncationRule
from dp.provenance import stamp
from dp.seeds import rng

TRAINERS: dict[str, str] = {
    "features": "dp.judge.train:train_features_judge",
    "cross-encoder": "dp.judge.cross_encoder:trainer",
    "llm": "dp.judge.llm_train:trainer",
    "lm-embed": "dp.judge.lm_embed:trainer",
}


def register_trainer(judge_type: str, target: str) -> None:
    """Make `train_judge(judge_type=...)` call `target` ("module:function")."""
    TRAINERS[judge_type] = target


def train_features_judge(pairs: PairSet, out: Path, seed: int, meta: dict) -> Judge:
    """Trainer for the `features` judge (logistic regression; deterministic, `seed` unused)."""
    from dp.judge.features import train_features

    judge = train_features(pairs.left, pairs.right, pairs.labels, meta=meta)
    judge.save(out)
    return judge


def training_meta(cache: Cache, problems: dict[str, list[str] | None], truncate: list[str], seed: int,
                  oversample: int, max_pairs: int | None, pairs: PairSet) -> dict:
    """judge.json's `trained_on` record: runs, problem ids and question digests
    (`dp.judge.insample`), the settings, the cache's identity. problems: run -> ids (None = all)."""
    ids, digests = {}, []
    for run, wanted in problems.items():
        chosen = [p for p in cache.problems(run) if wanted is None or p.problem_id in set(wanted)]
        ids[run] = [p.problem_id for p in chosen]
        digests += [problem_digest(p.question) for p in chosen]
    info = {run: {k: cache.run_info(run).get(k) for k in ("model", "source", "n", "seed", "created_at")}
            for run in problems}
    fingerprint = hashlib.blake2b(json.dumps([info, sorted(digests)], sort_keys=True, default=str).encode(),
                                  digest_size=8).hexdigest()
    return {
        "trained_on": {"cache": str(cache.path), "fingerprint": fingerprint, "runs": list(problems),
                       "problem_ids": ids, "problem_digests": sorted(set(digests)), "truncate": truncate,
                       "seed": seed, "oversample_negative": oversample, "max_pairs_per_problem": max_pairs,
                       "pairs": pairs.n, "positive_rate": pairs.positive_rate},
        **stamp(),
    }


def open_cache(cache_path: str | Path, write: bool) -> Cache:
    if not Path(cache_path).exists():
        raise DPError(f"no cache at {cache_path}")
    return Cache(cache_path, write=write)


def pairs_summary(cache_path: str | Path, run: str, rule: TruncationRule | str,
                  max_pairs: int | None = None, seed: int = 0, oversample: int = 1,
                  out: str | Path | None = None) -> dict:
    """Build the pairs of `run`, optionally export them as JSONL; return their summary."""
    rule = TruncationRule.parse(rule)
    with open_cache(cache_path, write=False) as cache:
        pairs = build_pairs(cache, run, rule, max_pairs, seed, oversample)
    summary = pairs.summary()
    if out is not None:
        pairs.to_jsonl(out)
        summary["out"] = str(out)
    return summary


def _unique_pairs(pairs: PairSet) -> np.ndarray:
    """Row indices of the first copy of each (pair, prefixes) (undoes oversampling for metrics)."""
    na = np.fromiter((p.n_tokens for p in pairs.left), dtype=np.int64, count=pairs.n)
    nb = np.fromiter((p.n_tokens for p in pairs.right), dtype=np.int64, count=pairs.n)
    _, first = np.unique(np.stack([pairs.a_ids, pairs.b_ids, na, nb], axis=1), axis=0, return_index=True)
    return np.sort(first)


def run_rules(rules: Sequence[TruncationRule | str], runs: Sequence[str]) -> list[tuple[str, TruncationRule]]:
    """(run, rule) for every run and rule: "RULE" applies to every run, "RUN=RULE" to that run only.

    A run named in no "RUN=RULE" entry gets the plain rules; a run given only RUN=RULE
    entries gets those alone."""
    parsed = []
    for r in rules:
        run, _, rule = r.rpartition("=") if isinstance(r, str) else ("", "", r)
        if run and run not in runs:
            raise DPError(f"--truncate {r}: run '{run}' is not among the runs ({', '.join(runs)})")
        parsed.append((run or None, TruncationRule.parse(rule)))
    own = {run for run, _ in parsed if run}
    out = [(run, rule) for target, rule in parsed for run in runs
           if run == target or (target is None and run not in own)]  # rule-major, as given
    missing = [run for run in runs if not any(r == run for r, _ in out)]
    if missing:
        raise DPError(f"no truncation rule for run(s) {', '.join(missing)}")
    return out


def train_judge(cache_path: str | Path, runs: Sequence[str], judge_type: str,
                rule: TruncationRule | str | Sequence[TruncationRule | str], out: str | Path,
                seed: int = 0, oversample: int = 2, max_pairs: int | None = None,
                settings: dict | None = None, resume: bool = False, time_limit: float | None = None) -> dict:
    """Train a judge of `judge_type` on the pairs of `runs`; write `out/judge.json`; return a summary.

    `settings`: keyword arguments for the trainer (e.g. {"steps": 300} for the neural judges).

    Several rules: the pairs of every (run, rule) are pooled, so one judge learns
    prefixes of several lengths (the trainer sees `pairs.rule` = the first rule); a rule
    written RUN=RULE applies to that run only (`run_rules`).
    `resume`, `time_limit` (seconds): for trainers that checkpoint (llm): continue from
    OUT's checkpoint; stop at the first checkpoint past the limit and return
    {"complete": False, ...} without judge.json (run again with resume).
    """
    runs = list(runs)
    if not runs:
        raise DPError("no run to train on")
    pairs_of = run_rules([rule] if isinstance(rule, (str, TruncationRule)) else list(rule), runs)
    if judge_type not in TRAINERS:
        raise DPError(f"cannot train judge '{judge_type}' (trainable: {', '.join(sorted(TRAINERS))})")
    with open_cache(cache_path, write=False) as cache:
        sets = [build_pairs(cache, run, r, max_pairs, seed, oversample) for run, r in pairs_of]
    pairs = sets[0] if len(sets) == 1 else PairSet.concat(sets)
    truncate = [str(r) for r in ([rule] if isinstance(rule, (str, TruncationRule)) else list(rule))]
    if pairs.n == 0 or len(np.unique(pairs.labels)) < 2:
        raise DPError(f"run(s) {', '.join(runs)} have no pairs of both labels under {', '.join(truncate)}; "
                      "cannot train")
    with open_cache(cache_path, write=False) as cache:
        meta = training_meta(cache, {run: None for run in runs}, truncate, seed, oversample, max_pairs, pairs)
    module, attr = TRAINERS[judge_type].split(":")
    out = Path(out)
    fit = getattr(importlib.import_module(module), attr)
    settings = dict(settings or {})
    accepts = inspect.signature(fit).parameters
    if settings and not any(p.kind is p.VAR_KEYWORD for p in accepts.values()):
        raise DPError(f"judge type '{judge_type}' takes no training settings (got {', '.join(sorted(settings))})")
    if (resume or time_limit is not None) and "resume" not in accepts:
        raise DPError(f"judge type '{judge_type}' trains in one go (no --resume / --time-limit)")
    runtime = {"resume": resume, "time_limit": time_limit} if "resume" in accepts else {}
    judge = fit(pairs, out, seed, meta, **runtime, **settings)
    base = {"type": judge_type, "out": str(out), "runs": runs, "truncate": truncate, "seed": seed,
            "pairs": pairs.n, "positive_rate": pairs.positive_rate}
    if isinstance(judge, dict):  # stopped by the time limit; resumable
        return {**base, **judge}
    keep = _unique_pairs(pairs)
    limit = getattr(getattr(judge, "train_settings", None), "max_metric_pairs", None)
    if limit is not None and keep.size > limit:  # slow judges: a seeded sample of the training pairs
        keep = np.sort(rng(seed, "train-metrics").choice(keep, limit, replace=False))
    scores = judge.score([pairs.left[i] for i in keep], [pairs.right[i] for i in keep])
    metrics = judge_metrics(scores, pairs.labels[keep])
    spec_path = out / JUDGE_FILE
    spec = json.loads(spec_path.read_text())
    spec["train_metrics"] = {"auroc": metrics["auroc"], "tnr_at_fnr_0_2": metrics["tnr_at_fnr_0_2"],
                             "pairs": int(keep.size)}
    spec_path.write_text(json.dumps(spec, indent=2) + "\n")
    training = getattr(judge, "meta", {}).get("training", {}) if hasattr(judge, "meta") else {}
    extra = {k: training[k] for k in ("complete", "step", "steps", "seconds", "best_val_auroc", "best_step",
                                      "stopped_early", "history") if k in training}
    return {"judge": judge.name, **base, "train_auroc": metrics["auroc"],
            "train_tnr_at_fnr_0_2": metrics["tnr_at_fnr_0_2"], "train_metric_pairs": int(keep.size), **extra}


def evaluate_judge(cache_path: str | Path, run: str, judge: str | Judge, rule: TruncationRule | str,
                   max_pairs: int | None = None, seed: int = 0, store_scores: bool = True,
                   crossfit: int | None = None, oversample: int = 2) -> dict:
    """AUROC and TNR at FNR = 0.2 of `judge` on the pairs of `run` (scores go through the cache).

    `crossfit=K`: `judge` names a trainable type; K judges are trained on folds of the run's
    problems (`dp.judge.crossfit`) and every pair is scored by the judge that never saw its
    problem. Otherwise `judge_in_sample` says whether the judge was trained on this run's problems.
    """
    from dp.judge.crossfit import crossfit_judges
    from dp.judge.insample import in_sample

    rule = TruncationRule.parse(rule)
    stats: dict = {}
    extra: dict = {}
    with open_cache(cache_path, write=store_scores) as cache:
        pairs = build_pairs(cache, run, rule, max_pairs, seed)
        if pairs.n == 0 or len(np.unique(pairs.labels)) < 2:
            raise DPError(f"run '{run}' has no pairs of both labels under {rule}; AUROC undefined")
        if crossfit:
            folds = crossfit_judges(cache, run, str(judge), rule, crossfit, seed, oversample, max_pairs)
            pair_fold = folds.pair_folds(pairs)
            scores = np.empty(pairs.n)
            for f, j in enumerate(folds.judges):
                rows = np.flatnonzero(pair_fold == f)
                part: dict = {}
                scores[rows] = score_pairs(j, rule, [pairs.left[i] for i in rows], [pairs.right[i] for i in rows],
                                           cache=cache, stats=part)
                for key, v in part.items():
                    stats[key] = stats.get(key, 0) + v
            name, insample, extra = folds.name, False, folds.describe()
        else:
            j = load_judge(judge, seed=seed) if isinstance(judge, (str, Path)) else judge
            scores = score_pairs(j, rule, pairs.left, pairs.right, cache=cache, stats=stats)
            name = j.name
            insample = in_sample(j, run, [p.question for p in cache.problems(run)])
    return {"judge": name, "run": run, "truncate": str(rule), "seed": seed,
            "max_pairs_per_problem": max_pairs, **judge_metrics(scores, pairs.labels),
            "judge_in_sample": insample, **extra,
            "scores_cached": stats.get("cached", 0), "scores_computed": stats.get("computed", 0),
            **stamp()}
