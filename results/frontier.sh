#!/usr/bin/env bash
# The frontier and the tuned policy of every real run (docs/results.md, "Which method wins").
# Run from the repository root after `make setup`; writes results/frontier/.
set -euo pipefail
DP=${DP:-.venv/bin/dp}
C=${C:-out/real.duckdb}
OUT=results/frontier
mkdir -p "$OUT" out
if [ ! -f "$C" ]; then
  $DP import ../shared/data/traces/esc_gpt35_last_letters_T0.7.jsonl --format esc --run esc --cache "$C"
  $DP import ../shared/data/traces/qwen25math_math_cot_100.jsonl --format qwen-math --run qwen --cache "$C"
fi
# the shipped features judge was trained on these two files: cross-fitted judges only (5 folds)
$DP frontier --cache "$C" --run esc --crossfit 5 --truncate tokens:8 --orders 20 --out "$OUT/esc"
$DP frontier --cache "$C" --run qwen --crossfit 5 --truncate tokens:40 --truncate words:25 --orders 20 --out "$OUT/qwen"
$DP tune --cache "$C" --run esc --crossfit 5 --truncate tokens:8 --orders 20 --tolerance 0.01 --out "$OUT/tuned_esc.json" --json > "$OUT/tune_esc.json"
$DP tune --cache "$C" --run qwen --crossfit 5 --truncate tokens:40 --orders 20 --tolerance 0.01 --out "$OUT/tuned_qwen.json" --json > "$OUT/tune_qwen.json"
# the generated default run (make demo's cache): the features judge never saw these questions
if [ -f dp.duckdb ] || [ -n "${DEFAULT_CACHE:-}" ]; then
  D=${DEFAULT_CACHE:-dp.duckdb}
  $DP frontier --cache "$D" --run default --truncate tokens:8 --orders 20 --out "$OUT/default"
  $DP tune --cache "$D" --run default --truncate tokens:8 --orders 20 --tolerance 0.01 --out "$OUT/tuned_default.json" --json > "$OUT/tune_default.json"
fi
