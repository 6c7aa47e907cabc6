#!/usr/bin/env bash
# The GPU path of issue 26, prepared for a machine with one CUDA GPU; < 10 minutes in all.
#
# NOT RUN YET: the session that wrote it had no GPU. Run it from the repository root, in a
# venv where `dp` is installed with a CUDA torch (and, for step 1, the SmolLM2 model of
# docs/offline.md); it writes everything under $OUT (default out/gpu) and a summary in
# $OUT/summary.txt. Each step has its own time limit, so one slow step cannot eat the rest.
#
#   1. transformers engine on CUDA, bf16: `dp generate --engine transformers --dtype bfloat16`
#      (TransformersEngine puts the model on the GPU when there is one), 4 problems x 8 traces
#      x 256 tokens; tokens/s from its --json output.
#   2. judge training on CUDA, bf16: the llm judge (`dp judge train --judge llm`, bf16 on cuda
#      by default there) on the pairs of step 1's run, 30 optimiser steps, then `dp judge eval`.
#   3. the trace-driven live run: `benchmarks/bench_overhead.py` at 512 x 4096 (DeepPrune with
#      jaccard, DeepConf, ESC on the replay engine, a stand-in for the GPU's pace) with the
#      decisions checked against the simulator: dp's own CPU cost per token on that machine.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DP=${DP:-.venv/bin/dp}
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
SUM="$OUT/summary.txt"
"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "error: no CUDA device")'
{ date -u; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true; } > "$SUM"
CACHE="$OUT/gpu.duckdb"
rm -f "$CACHE" "$CACHE.wal"

t0=$(date +%s)
timeout 240 "$DP" generate --cache "$CACHE" --run tf --engine transformers --dtype bfloat16 --limit 4 --n 8 \
    --max-tokens 256 --seed 0 --json --no-progress > "$OUT/generate.json"
echo "1. transformers engine, cuda bf16: $(( $(date +%s) - t0 )) s; $("$PY" -c "
import json; o = json.load(open('$OUT/generate.json'))
print({k: o[k] for k in o if 'token' in k or 'second' in k})")" >> "$SUM"

t0=$(date +%s)
timeout 240 "$DP" judge train --cache "$CACHE" --run tf --judge llm --truncate tokens:64 --max-pairs 8 --steps 30 \
    --out "$OUT/judge" --json > "$OUT/train.json"
timeout 60 "$DP" judge eval --cache "$CACHE" --run tf --judge "$OUT/judge" --truncate tokens:64 --json \
    > "$OUT/eval.json" || true
echo "2. llm judge training, cuda bf16: $(( $(date +%s) - t0 )) s; train $(head -c 400 "$OUT/train.json")" >> "$SUM"

t0=$(date +%s)
timeout 240 "$PY" benchmarks/bench_overhead.py --size 512x4096 --policies deepprune-jaccard,deepconf-high,esc \
    --check --no-serve --out "$OUT/overhead" --json "$OUT/overhead.json" > "$OUT/overhead.txt"
echo "3. trace-driven live run (stand-in engine), 512 x 4096: $(( $(date +%s) - t0 )) s" >> "$SUM"
cat "$OUT/overhead.txt" >> "$SUM"
cat "$SUM"
