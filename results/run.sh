#!/usr/bin/env bash
# The reproduction of docs/results.md, step by step. Every number in results/*.json
# comes from one of these commands; caches live in out/ (not in git).
# Usage: bash results/run.sh [step...]   steps: generate import judges simulate live figures
set -euo pipefail
cd "$(dirname "$0")/.."
DP=.venv/bin/dp
LARGE=out/large.duckdb   # 20 arith problems x 128 traces on SmolLM2-135M (vLLM CPU, fp32)
REAL=out/real.duckdb     # the two shared trace files
steps=${*:-"generate import judges simulate live figures"}

for step in $steps; do case $step in
generate)  # ~30 min on 2 cores; resumable, so it can run in pieces (--limit 10, 20, 30)
  for L in 10 20; do
    $DP generate --cache $LARGE --run arith20-n128 --dataset arith --limit $L --n 128 --max-tokens 128 \
        --temperature 0.7 --top-p 0.95 --seed 2026 --batch 128 --no-progress --json > results/generate_arith20_$L.json
  done
  ;;
import)
  [ -f $REAL ] || {
    $DP import ../shared/data/traces/esc_gpt35_last_letters_T0.7.jsonl --format esc --run esc --cache $REAL
    $DP import ../shared/data/traces/qwen25math_math_cot_100.jsonl --format qwen-math --run qwen --cache $REAL; }
  $DP cache info --cache $REAL --json > results/cache_info_real.json
  $DP cache info --cache $LARGE --json > results/cache_info_large.json
  ;;
judges)  # Only judges that never saw the problems they score: the default features judge was trained
  # on the two shared files, so there it is cross-fitted (5 folds of problems); arith20 it never saw.
  # Rules leave the answer out of most prefixes: prefix_share 0.23 (qwen), 0.45 (esc), 0.27 (arith20).
  for spec in "$REAL qwen tokens:100" "$REAL esc tokens:30" "$LARGE arith20-n128 tokens:8"; do
    set -- $spec
    for j in oracle random jaccard; do
      $DP judge eval --cache $1 --run $2 --judge $j --truncate $3 --max-pairs 20 --seed 0 --json
    done
    $DP judge eval --cache $1 --run $2 --judge features --crossfit 5 --truncate $3 --max-pairs 20 --seed 0 --json
  done > out/judges.txt
  $DP judge eval --cache $LARGE --run arith20-n128 --judge features --truncate tokens:8 --max-pairs 20 \
      --seed 0 --json >> out/judges.txt  # the shipped judge, out of run
  .venv/bin/python -c "import json,sys; d=open('out/judges.txt').read(); print(json.dumps(json.loads('['+d.replace('}\n{','},{')+']'), indent=1))" \
    > results/judges.json
  ;;
simulate)  # DeepPrune rows carry their matched random controls and the paired differences
  P="--policy cons --policy deepprune --policy deepprune-oracle --policy esc --policy adaptive --policy random"
  $DP simulate --cache $LARGE --run arith20-n128 $P --policy deepconf-low --policy deepconf-high \
      --truncate tokens:8 --tau 0.5 --orders 50 --seed 0 --json > results/main_arith20.json
  $DP simulate --cache $LARGE --run arith20-n128 --policy deepconf-low --policy deepconf-high --conf-window 8 \
      --orders 50 --seed 0 --json > results/deepconf_w8_arith20.json  # the 2048-token window sees 30-token traces whole
  $DP simulate --cache $LARGE --run arith20-n128 --policy deepprune --truncate tokens:8 --crossfit 5 \
      --tau 0.5 --orders 50 --seed 0 --json > results/main_arith20_crossfit.json
  $DP simulate --cache $LARGE --run arith20-n128 --policy deepprune --truncate tokens:8 \
      --sweep tau=0.05:0.95:0.05 --orders 50 --seed 0 --json > results/sweep_tau_arith20.json
  $DP simulate --cache $REAL --run esc $P --truncate tokens:30 --crossfit 5 --tau 0.5 --orders 50 --seed 0 \
      --json > results/main_esc.json
  $DP simulate --cache $REAL --run esc --policy deepprune --policy deepprune-oracle --truncate tokens:30 \
      --crossfit 5 --K2 5 --tau 0.5 --orders 50 --seed 0 --json > results/main_esc_k2_5.json
  $DP simulate --cache $REAL --run qwen $P --truncate tokens:100 --crossfit 5 --K2 4 --tau 0.5 --orders 50 \
      --seed 0 --json > results/main_qwen.json
  ;;
live)  # the live runner on 2 problems of the large run, against the simulator in the same arrival order
  $DP live --cache $LARGE --run arith20-n128 --policy deepprune --tau 0.5 --truncate tokens:8 --limit 2 \
      --mode resume --compare --replace --json > results/live_arith20.json
  ;;
figures)  # out/default.duckdb: the embedded default run of `make demo` (dp generate with no options)
  $DP figures --cache out/default.duckdb --out results/figures_default --truncate tokens:8 --orders 20 --seed 0
  $DP figures --cache $LARGE --out results/figures_arith20 --truncate tokens:8 --orders 20 --seed 0
  ;;
*) echo "unknown step $step" >&2; exit 2;;
esac; done
