"""Replay: policies run on cached traces over many arrival orders, exactly.

Reads problems from the cache as `ProblemContext`s, scores judge pairs through the judge-score
cache (`PairScores`), replays policies over seeded arrival orders (`driver`), pairs the matched
random controls, sweeps settings (`sweep`, `tau_sweep`). Knows nothing about vLLM; never generates.
Never imports `dp.simulate.live` or `dp.simulate.serve`.
"""
