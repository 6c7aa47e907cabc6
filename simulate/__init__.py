"""Pruning policies, replayed on cached traces and run live: one policy object for both.

Four sub-packages, each layer importing only those below it (import-linter contracts in
pyproject.toml):
- `policies`: the policies themselves (DeepPrune, cons@N, random, DeepConf, ESC,
  Adaptive-Consistency, Slim-SC, short-m@k, confidence-weighted DeepPrune), the interface and
  the one token-accounting rule, `POLICIES`. Pure numpy: no cache, engine or model.
- `replay`: cached problems as arrays, judge scores through the score cache, replays over
  seeded arrival orders with matched controls, sweeps, `dp frontier` and `dp tune`. Never
  generates.
- `live`: the same policies against a streaming engine (vLLM's AsyncLLM, or the trace-driven
  stand-in), stopping what they prune; `dp live` and its `--compare` against the replay.
- `serve`: `dp serve`, the OpenAI-compatible endpoint on top of `live`.
"""
