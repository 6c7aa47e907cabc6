"""Judge benchmark, run by hand: speed of every judge, and cross-model AUROC of the features judge.

    .venv/bin/python benchmarks/bench_judges.py [--cache out/bench.duckdb] [--rules words:25,tokens:100]

1. Imports the two shared trace files (runs `esc` and `qwen`) into the cache if absent.
2. Speed: pairs scored per second by each judge on `--speed-pairs` Qwen pairs under
   tokens:500 (no score cache; the embedding model is loaded before timing).
3. Cross-model: a features judge trained with the default judge's recipe (all rules
   pooled, `--train-pairs` pairs per problem, label-0 pairs oversampled 2x) on one run
   only is evaluated on the other run under each rule, next to oracle, random,
   jaccard, embedding and the shipped default features judge (trained on both runs,
   so in-domain there). Evaluation on `esc` samples
   `--esc-pairs` pairs per problem. Scores go through the score cache, so a rerun
   only computes what is new. Trained judges are written under `--out`.

Prints two tables. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dp.cache import Cache
from dp.cli.options import print_table
from dp.judge import load_judge
from dp.judge.pairs import build_pairs
from dp.judge.train import evaluate_judge, train_judge

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT.parent / "shared" / "data" / "traces"
FILES = {"esc": ("esc_gpt35_last_letters_T0.7.jsonl", "esc"),
         "qwen": ("qwen25math_math_cot_100.jsonl", "qwen-math")}
BASELINES = ["oracle", "random", "jaccard", "embedding", "features"]


def ensure_runs(cache: Path) -> None:
    from dp.cli import cli

    have = set()
    if cache.exists():
        with Cache(cache) as c:
            have = set(c.runs())
    for run, (name, fmt) in FILES.items():
        if run not in have:
            print(f"importing {name} as run {run} ...", file=sys.stderr)
            cli.main(["import", str(TRACES / name), "--format", fmt, "--run", run, "--cache", str(cache)],
                     standalone_mode=False)


def speed(cache: Path, judges: list[str], n_pairs: int) -> list[dict]:
    with Cache(cache) as c:
        pairs = build_pairs(c, "qwen", "tokens:500", max_pairs_per_problem=max(1, n_pairs // 100), seed=0)
    left, right = pairs.left[:n_pairs], pairs.right[:n_pairs]
    distinct = len({p.text for p in (*left, *right)})
    rows = []
    for name in judges:
        judge = load_judge(name)
        judge.score(left[:4], right[:4])  # load models outside the timing
        t = time.perf_counter()
        judge.score(left, right)
        dt = time.perf_counter() - t
        rows.append({"judge": judge.name, "pairs": len(left), "prefixes": distinct, "seconds": dt,
                     "pairs_per_s": len(left) / dt})
    return rows


def cross_model(cache: Path, rules: list[str], judges: list[str], out: Path, esc_pairs: int,
                train_pairs: int) -> list[dict]:
    rows = []
    trained = {}
    for train_run in ("esc", "qwen"):  # the default judge's recipe, on one file only
        trained[train_run] = out / f"features-{train_run}"
        tr = train_judge(cache, [train_run], "features", rules, trained[train_run], seed=0, oversample=2,
                         max_pairs=train_pairs)
        print(f"trained on {train_run} ({', '.join(rules)}): {tr['judge']}, {tr['pairs']} pairs, "
              f"train AUROC {tr['train_auroc']:.4f}")
    for rule in rules:
        for train_run, test_run in (("esc", "qwen"), ("qwen", "esc")):
            max_pairs = esc_pairs if test_run == "esc" else None
            t = time.perf_counter()
            ev = evaluate_judge(cache, test_run, trained[train_run], rule, max_pairs=max_pairs)
            rows.append({"rule": rule, "test": test_run, "judge": "features (trained)", "trained_on": train_run,
                         "auroc": ev["auroc"], "tnr@fnr0.2": ev["tnr_at_fnr_0_2"],
                         "pairs": ev["pairs"], "pos_rate": ev["positive_rate"], "s": time.perf_counter() - t})
        for test_run in ("esc", "qwen"):
            max_pairs = esc_pairs if test_run == "esc" else None
            for name in judges:
                t = time.perf_counter()
                ev = evaluate_judge(cache, test_run, name, rule, max_pairs=max_pairs)
                rows.append({"rule": rule, "test": test_run, "judge": ev["judge"], "trained_on": "",
                             "auroc": ev["auroc"], "tnr@fnr0.2": ev["tnr_at_fnr_0_2"], "pairs": ev["pairs"],
                             "pos_rate": ev["positive_rate"], "s": time.perf_counter() - t})
            print_table(rows[-len(judges):], ["rule", "test", "judge", "auroc", "tnr@fnr0.2", "pairs", "s"])
            sys.stdout.flush()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=ROOT / "out" / "bench.duckdb")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench_judges")
    ap.add_argument("--rules", default="words:25,tokens:100,tokens:40")
    ap.add_argument("--judges", default=",".join(BASELINES))
    ap.add_argument("--speed-pairs", type=int, default=1000)
    ap.add_argument("--esc-pairs", type=int, default=10, help="pairs per problem when evaluating on esc")
    ap.add_argument("--train-pairs", type=int, default=28, help="pairs per problem when training")
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args()
    judges = [j for j in args.judges.split(",") if j]
    ensure_runs(args.cache)
    if not args.skip_speed:
        print("\n## speed (Qwen pairs, tokens:500, one process, no score cache)")
        print_table(speed(args.cache, judges, args.speed_pairs), ["judge", "pairs", "prefixes", "seconds", "pairs_per_s"],
                    floats="{:.2f}")
    print("\n## AUROC: features trained on one run, evaluated on the other; baselines on each run")
    rows = cross_model(args.cache, [r for r in args.rules.split(",") if r], judges, args.out, args.esc_pairs,
                       args.train_pairs)
    print()
    print_table(rows, ["rule", "test", "judge", "trained_on", "auroc", "tnr@fnr0.2", "pairs", "pos_rate"])


if __name__ == "__main__":
    main()
