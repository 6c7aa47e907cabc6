"""Live driver of DeepConf online: warm-up traces first, then the rest under the cut.

The first `warmup` traces (by index: the live order is the index order) run to
the end; the policy turns their scores into the cut (`DeepConf.threshold`).
Then every other trace starts with a `DeepConf.Monitor` fed the token
confidences of each delta (computed from the streamed top-k log-probs and
rounded as the cache stores them, so the replay sees the same numbers); a trace
is stopped as soon as its running confidence falls below the cut. The stop is
asked for at that token; the engine may have decoded a few more, which are
counted in `tokens` (really generated) but not in `decision_token` (the replay's
charge). Survivors vote, weighted by their trace score.
"""

from __future__ import annotations

import numpy as np

from dp.errors import DPError
from dp.simulate.live.problem import LiveTraces, ProblemLive


async def drive_deepconf(lt: LiveTraces, policy, *, judge=None, rule=None, mode: str = "keep",
                         rng=None) -> ProblemLive:
    n = lt.n
    w = min(policy.params.warmup, n)
    await lt.run(range(w))
    scores = np.array([policy.score(lt.confidence(t)) for t in range(w)])
    if np.isnan(scores).any():
        bad = np.flatnonzero(np.isnan(scores))[:5].tolist()
        raise DPError(f"DeepConf: warm-up trace(s) {', '.join(map(str, bad))} of problem "
                      f"'{lt.problem.problem_id}' have no token confidence (empty trace?); cannot set a threshold")
    thr = float(policy.threshold(scores[None, :])[0])
    monitors = {t: policy.monitor(thr) for t in range(w, n)}

    def on_delta(t: int, seen: int, done: bool):
        m = monitors[t]
        if m.stop_at is None and m.feed(lt.new_confidences(t, m.n), done) is not None:
            return lt.stop(t)  # awaited by LiveTraces; nothing to await on every other delta
        return None

    await lt.run(range(w, n), on_delta)
    seconds = await lt.wait()
    records = lt.records()
    tokens = lt.tokens()
    stop_at = np.array([tokens[t] if t < w or monitors[t].stop_at is None else monitors[t].stop_at
                        for t in range(n)], dtype=np.int64)
    voters = np.array([scores[t] >= thr if t < w else monitors[t].stop_at is None for t in range(n)])
    weights = np.array([scores[t] if t < w else policy.score(lt.confidence(t)) if voters[t] else 0.0
                        for t in range(n)])  # warm-up scores are already known; only voters' weights count
    answer, ok = lt.vote(records, voters, list(range(n)), weights)
    return ProblemLive(
        problem_id=lt.problem.problem_id, records=records, arrival=list(range(n)), decision_token=stop_at,
        finished=voters, tokens=tokens, correct=ok, seconds=seconds, answer=answer, weights=weights,
        notes=[f"threshold {thr:.4f}"],
    )
