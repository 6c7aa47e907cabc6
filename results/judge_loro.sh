#!/usr/bin/env bash
# Issue 18: the learned judges, leave-one-run-out. Every number in results/judge_loro/ comes from here.
# Usage: bash results/judge_loro.sh [step...]   steps: cache fast llm eval simulate simulate-model sweep table
# Heavy steps take the shared lock (/tmp/dp-heavy.lock) per command; the llm fine-tune runs in
# chunks of --time-limit seconds, each its own lock hold, resumed from OUT/checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
DP=.venv/bin/dp
C=out/loro.duckdb             # every run dp has here, in one cache
L=${L-flock /tmp/dp-heavy.lock}  # L= when the caller already holds the lock
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=2
steps=${*:-"cache fast llm eval simulate simulate-model sweep table"}
# held-out group -> the runs it trains on (every other group); arith = arith20-n128 + default
# (the same model, SmolLM2-135M, and task): they leave together.
declare -A TRAIN=([arith]="--run esc --run qwen" [esc]="--run qwen --run arith20-n128 --run default"
                  [qwen]="--run esc --run arith20-n128 --run default")
RULES="--truncate esc=tokens:15 --truncate esc=tokens:30 --truncate qwen=tokens:50 --truncate qwen=tokens:100
       --truncate arith20-n128=tokens:4 --truncate arith20-n128=tokens:8 --truncate default=tokens:4
       --truncate default=tokens:8"
rules_for() { # the rules of the training runs of fold $1
  for r in $RULES; do [[ $r == --truncate ]] && continue
    case " ${TRAIN[$1]} " in *" --run ${r%%=*} "*) echo -n "--truncate $r ";; esac; done; }
# the llm recipe: top 4 decoder layers of SmolLM2-135M fp32, focal loss (gamma 2), oversampling 2,
# batch 8 x 2 accumulated, prefixes cut to their last 96 tokens, validation on 10% of the problems
LLM_SET="--set train_layers=4 --set lr=2e-4 --set batch_size=8 --set grad_accum=2 --set max_trace_tokens=96
         --set focal_gamma=2 --set val_share=0.1 --set val_pairs=128 --set eval_every=15 --set patience=3
         --set checkpoint_every=15 --set symmetric=false --set max_train_pairs=4000 --set score_batch_size=16"

replay() {  # HELDOUT RUN RULE K2 JUDGE: one DeepPrune replay as a JSON line, with its wall seconds
  # (timed inside the lock, so a wait for the lock does not count)
  $L .venv/bin/python - $DP $C "$@" <<'PY'
import json, subprocess, sys, time
dp, cache, held, run, rule, k2, judge = sys.argv[1:]
t0 = time.time()
out = subprocess.run([dp, "simulate", "--cache", cache, "--run", run, "--truncate", rule,
                      "--K2", k2, "--judge", judge, "--policy", "deepprune", "--policy", "deepprune-oracle",
                      "--policy", "cons", "--orders", "20", "--seed", "0", "--no-store", "--json"],
                     stdout=subprocess.PIPE, text=True, check=True).stdout
print(json.dumps({"heldout": held, "judge": judge, "seconds": round(time.time() - t0), "rows": json.loads(out)}))
PY
}

for step in $steps; do case $step in
cache)  # esc + qwen (the shared files), arith20-n128 and default (SmolLM2 runs) in one file
  [ -f $C ] || $DP cache merge out/real.duckdb out/large.duckdb out/default.duckdb --out $C
  ;;
fast)  # features, lm-embed and the cross-encoder, one per fold
  for h in arith esc qwen; do  # (the cross-encoder on fewer pairs: train_auroc scores all of them)
    $DP judge train --cache $C ${TRAIN[$h]} $(rules_for $h) --judge features --max-pairs 20 \
        --out out/loro/$h/features --json > out/loro_train_features_$h.json
    $L $DP judge train --cache $C ${TRAIN[$h]} $(rules_for $h) --judge lm-embed --max-pairs 20 \
        --set max_train_pairs=4000 --set max_trace_tokens=96 --out out/loro/$h/lm-embed --json \
        > out/loro_train_lm-embed_$h.json
    $L $DP judge train --cache $C ${TRAIN[$h]} $(rules_for $h) --judge cross-encoder --max-pairs 4 \
        --steps ${CE_STEPS:-150} --set max_length=192 --out out/loro/$h/cross-encoder --json \
        > out/loro_train_cross-encoder_$h.json
  done
  ;;
llm)  # FOLDS="arith esc qwen" by default; EXTRA= more --set (e.g. LoRA), NAME= output name
  for h in ${FOLDS:-arith esc qwen}; do
    out=out/loro/$h/${NAME:-llm}
    until [ -f $out/judge.json ]; do
      $L $DP judge train --cache $C ${TRAIN[$h]} $(rules_for $h) --judge llm --max-pairs 20 --steps ${LLM_STEPS:-80} \
          $LLM_SET ${EXTRA:-} --out $out --resume --time-limit ${CHUNK:-420} --json >> out/loro_train_${NAME:-llm}_$h.jsonl
    done
  done
  ;;
eval)  # every judge on the held-out run of each fold, 300 pairs per rule, seed 0
  mkdir -p out/loro/zero-shot
  echo '{"type": "llm", "settings": {"max_trace_tokens": 96, "symmetric": false, "score_batch_size": 16}}' \
    > out/loro/zero-shot/judge.json
  $L $DP judge loro --cache $C --group arith=arith20-n128,default --group esc --group qwen $RULES \
      --judge 'fine-tuned LM=out/loro/{heldout}/llm' --judge 'zero-shot LM=out/loro/zero-shot' \
      --judge 'LM embeddings=out/loro/{heldout}/lm-embed' --judge 'cross-encoder=out/loro/{heldout}/cross-encoder' \
      --judge 'MiniLM cosine=embedding' --judge 'features=out/loro/{heldout}/features' --judge jaccard \
      --judge random --judge oracle --max-pairs 300 --seed 0 ${EVAL_EXTRA:-} --out results/judge_loro --json \
      > out/loro_eval.json
  ;;
simulate)  # DeepPrune (tau 0.5, 20 orders, paper accounting) with each fold's judge on its held-out run,
  # every row paired with the count- and token-matched random controls (jaccard and features: no model)
  for spec in "arith arith20-n128 tokens:8 20" "esc esc tokens:30 20" "qwen qwen tokens:100 4"; do
    for j in jaccard out/loro/${spec%% *}/features; do replay $spec $j; done
  done > out/loro_simulate_cheap.jsonl
  ;;
simulate-model)  # the same replays with the model judges where they fit 2 cores (a replay scores every
  # pair DeepPrune compares: the LM prompt judge ~0.2 s per pair, so on qwen only; see docs/judges.md)
  for spec in "qwen qwen tokens:100 4 out/loro/qwen/llm" "qwen qwen tokens:100 4 out/loro/qwen/lm-embed" \
              "qwen qwen tokens:100 4 out/loro/qwen/cross-encoder" "qwen qwen tokens:100 4 embedding" \
              "arith arith20-n128 tokens:8 20 out/loro/arith/lm-embed" "arith arith20-n128 tokens:8 20 embedding" \
              "esc esc tokens:30 20 embedding" "arith arith20-n128 tokens:8 20 out/loro/arith/cross-encoder"; do
    replay $spec
  done > out/loro_simulate_model.jsonl
  ;;
sweep)  # qwen: tau inside each model judge's score band (at 0.5 they join everything or nothing)
  names=()
  for spec in "llm 0.05,0.1,0.15,0.2,0.3" "lm-embed 0.2,0.3,0.4" "embedding 0.95,0.98,0.99,0.995" \
              "cross-encoder 0.6,0.62,0.64"; do
    set -- $spec
    names+=($1)
    j=out/loro/qwen/$1; [ $1 = embedding ] && j=embedding
    $L $DP simulate --cache $C --run qwen --truncate tokens:100 --K2 4 --judge $j --sweep tau=$2 \
        --policy deepprune --orders 20 --seed 0 --no-store --json > out/loro_sweep_$1_qwen.json
  done
  .venv/bin/python -c "import json,sys; print(json.dumps({'run': 'qwen', 'truncate': 'tokens:100', 'K2': 4,
      'orders': 20, 'seed': 0, 'sweeps': {n: json.load(open(f'out/loro_sweep_{n}_qwen.json')) for n in sys.argv[1:]}},
      indent=1))" "${names[@]}" > results/judge_loro/sweep_qwen.json
  ;;
table)  # results/judge_loro/simulate.json: every replay above, cheap judges first
  cat out/loro_simulate_cheap.jsonl out/loro_simulate_model.jsonl 2>/dev/null \
    | .venv/bin/python -c "import json,sys; print(json.dumps([json.loads(l) for l in sys.stdin], indent=1))" \
    > results/judge_loro/simulate.json
  ;;
esac; done
